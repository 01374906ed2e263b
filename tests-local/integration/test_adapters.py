"""The AWS adapters hand the SDK's errors to the flow as the ports' own, on moto."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError
from moto import mock_aws
from pydicom.dataset import Dataset

from pacs_validator.aws.dynamodb import DynamoDBStatusTable
from pacs_validator.aws.eventbridge import MAX_REQUEST_BYTES, EventBridgePublisher, batches
from pacs_validator.aws.file_records import capped_record
from pacs_validator.aws.s3 import S3Bucket
from pacs_validator.contract.events import DetailType, Event
from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.validation import validate_instance
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


def create_status_table() -> DynamoDBStatusTable:
    boto3.client("dynamodb").create_table(
        TableName="status", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "study_id", "AttributeType": "S"},
                              {"AttributeName": "item", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "study_id", "KeyType": "HASH"},
                   {"AttributeName": "item", "KeyType": "RANGE"}])
    return DynamoDBStatusTable("status")


def test_a_known_study_is_created_once_and_a_condition_that_fails_is_no_error() -> None:
    table = create_status_table()
    assert table.create(STUDY_ID, expected=1, deadline_seconds=60) is True
    assert table.create(STUDY_ID, expected=1, deadline_seconds=60) is False


def wire_size(item: dict[str, Any]) -> int:
    """Bytes of an item as the SDK sends it (binary values in base64)."""
    return len(json.dumps(item, default=lambda value: base64.b64encode(value).decode()))


def test_a_file_record_is_stored_packed_and_read_back_whole(
        mutate: Callable[..., Path], config: ValidatorConfig) -> None:
    """The findings and UIDs of a real file's record go into one compressed attribute, which
    makes the item smaller, and come back as they went in; so does an item written before
    records were packed, and such an item replaced by another upload keeps only the packed
    fields."""
    def without_modality(dataset: Dataset) -> None:
        del dataset.Modality

    result, _ = validate_instance(mutate("CT_small.dcm", without_modality), config, name="a.dcm")
    record = {**result.to_record(), "key": f"incoming/{STUDY_ID}/a.dcm", "key_version": "01"}
    assert record["findings"] and record["summary"]["sop_instance_uid"]
    table = create_status_table()
    table.create(STUDY_ID, expected=2, deadline_seconds=60)
    table.record_file(STUDY_ID, "a.dcm", record)

    client = boto3.client("dynamodb")
    item = client.get_item(TableName="status", Key={
        "study_id": {"S": STUDY_ID}, "item": {"S": "file#a.dcm"}})["Item"]
    assert "B" in item["packed"] and not {"findings", "summary"} & item.keys()
    written = capped_record(record)
    read = next(table.files(STUDY_ID))
    assert {field: read[field] for field in written} == written

    old_layout = {field: value for field, value in item.items() if field != "packed"}
    old_layout.update({"item": {"S": "file#b.dcm"}, **{
        field: TypeSerializer().serialize(written[field]) for field in ("findings", "summary")}})
    assert wire_size(item) < 0.7 * wire_size(old_layout)
    client.put_item(TableName="status", Item=old_layout)
    second = list(table.files(STUDY_ID))[1]
    assert {field: second[field] for field in written if field != "name"} == {
        field: value for field, value in written.items() if field != "name"}
    assert table.file_page(STUDY_ID, limit=10).records[1]["findings"] == record["findings"]

    table.record_file(STUDY_ID, "b.dcm", {**record, "key_version": "02", "version_id": "v2"})
    replaced = client.get_item(TableName="status", Key={
        "study_id": {"S": STUDY_ID}, "item": {"S": "file#b.dcm"}})["Item"]
    assert "B" in replaced["packed"] and not {"findings", "summary"} & replaced.keys()
    assert list(table.files(STUDY_ID))[1]["version_id"] == "v2"


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
