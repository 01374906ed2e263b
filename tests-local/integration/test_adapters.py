"""The AWS adapters hand the SDK's errors to the flow as the ports' own, on moto."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from pacs_validator.aws.dynamodb import DynamoDBStatusTable
from pacs_validator.aws.eventbridge import MAX_REQUEST_BYTES, EventBridgePublisher, batches
from pacs_validator.aws.s3 import S3Bucket
from pacs_validator.contract.events import DetailType, Event
from pacs_validator.flow.ports import DependencyUnavailable

STUDY_ID = "0" * 32


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch) -> object:
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def test_an_s3_error_reaches_the_flow_as_dependency_unavailable_naming_the_error() -> None:
    bucket = S3Bucket("no-such-bucket")
    with pytest.raises(DependencyUnavailable, match=r"^NoSuchBucket$") as raised:
        bucket.get_json("work/x.json")
    assert isinstance(raised.value.__cause__, ClientError)
    with pytest.raises(DependencyUnavailable), bucket.downloaded("incoming/x.dcm"):
        pass


def test_a_dynamodb_error_while_reading_pages_of_files_is_translated_too() -> None:
    table = DynamoDBStatusTable("no-such-table")
    with pytest.raises(DependencyUnavailable, match="ResourceNotFoundException"):
        table.get(STUDY_ID)
    files = table.files(STUDY_ID)  # a generator: the error comes when it is read
    with pytest.raises(DependencyUnavailable, match="ResourceNotFoundException"):
        next(files)


def test_a_known_study_is_created_once_and_a_condition_that_fails_is_no_error() -> None:
    boto3.client("dynamodb").create_table(
        TableName="status", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "study_id", "AttributeType": "S"},
                              {"AttributeName": "item", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "study_id", "KeyType": "HASH"},
                   {"AttributeName": "item", "KeyType": "RANGE"}])
    table = DynamoDBStatusTable("status")
    assert table.create(STUDY_ID, expected=1, deadline_seconds=60) is True
    assert table.create(STUDY_ID, expected=1, deadline_seconds=60) is False


def test_an_event_bus_that_does_not_exist_is_a_dependency_unavailable() -> None:
    publisher = EventBridgePublisher("no-such-bus")
    event = Event(DetailType.STUDY_UPLOADED, {"key": "incoming/x.dcm"})
    with pytest.raises(DependencyUnavailable):
        publisher.publish(STUDY_ID, event)


def test_events_beyond_one_call_s_limits_are_put_in_several_calls_in_order() -> None:
    small = [{"Source": "s", "DetailType": "t", "Detail": str(n)} for n in range(23)]
    assert [[e["Detail"] for e in batch] for batch in batches(small)] == \
        [[str(n) for n in range(10)], [str(n) for n in range(10, 20)], ["20", "21", "22"]]
    large = [{"Source": "s", "DetailType": "t", "Detail": "x" * (MAX_REQUEST_BYTES // 3)}] * 5
    assert [len(batch) for batch in batches(large)] == [2, 2, 1]
