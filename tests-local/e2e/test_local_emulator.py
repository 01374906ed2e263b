"""What the local runtime changes in LocalStack's services (local-runtime/plugin) keeps their
answers: moto's DynamoDB items (``dynamodb.py``, ``patch_items``), one DynamoDB for the
functions and for LocalStack's API (``dynamodb_forwarding.py``), and Lambda's invocation
metrics (``lambda_telemetry.py``; its function logs are read by test_e2e's log test)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import ROOT, STACK_NAME, Deployment, aws, stack_json

pytestmark = pytest.mark.e2e

HEALTH_EVENT = ROOT / "events" / "api-health.json"


@pytest.fixture
def table() -> Iterator[str]:
    """A table of its own, so the checks touch no item of the pipeline's."""
    dynamodb = aws("dynamodb")
    name = f"emulator-probe-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    yield name
    dynamodb.delete_table(TableName=name)


def findings(count: int, text_bytes: int) -> dict[str, Any]:
    """A list of nested maps, the shape of a file record's findings."""
    return {"L": [{"M": {"rule": {"S": f"rule.{i}"}, "status": {"N": "422"},
                         "message": {"S": "x" * text_bytes},
                         "path": {"L": [{"M": {"keyword": {"S": "Code"}, "item": {"N": "1"}}}]}}}
                  for i in range(count)]}


def test_dynamodb_keeps_the_item_size_limit_and_the_items(table: str) -> None:
    dynamodb = aws("dynamodb")
    large = {"id": {"S": "large"}, "findings": findings(300, 1000), "n": {"N": "1"}}
    dynamodb.put_item(TableName=table, Item=large)  # about 310 KB
    with pytest.raises(ClientError) as too_large:
        dynamodb.put_item(TableName=table,
                          Item={"id": {"S": "over"}, "findings": findings(420, 1000)})
    assert "size" in too_large.value.response["Error"]["Message"].lower()
    with pytest.raises(ClientError) as grown_over:
        dynamodb.update_item(TableName=table, Key={"id": {"S": "large"}},
                             UpdateExpression="SET extra = :extra",
                             ExpressionAttributeValues={":extra": {"S": "y" * 120_000}})
    assert "size" in grown_over.value.response["Error"]["Message"].lower()

    old = dynamodb.update_item(TableName=table, Key={"id": {"S": "large"}},
                               UpdateExpression="ADD n :one SET findings[0].#status = :ok",
                               ExpressionAttributeNames={"#status": "status"},
                               ExpressionAttributeValues={":one": {"N": "1"},
                                                          ":ok": {"N": "200"}},
                               ReturnValues="ALL_OLD")["Attributes"]
    assert old == large
    stored = dynamodb.get_item(TableName=table, Key={"id": {"S": "large"}})["Item"]
    assert stored["n"] == {"N": "2"}
    assert stored["findings"]["L"][0]["M"]["status"] == {"N": "200"}
    assert stored["findings"]["L"][1:] == large["findings"]["L"][1:]
    with pytest.raises(ClientError) as exists:
        dynamodb.put_item(TableName=table, Item={"id": {"S": "large"}},
                          ConditionExpression="attribute_not_exists(id)",
                          ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert exists.value.response["Item"] == stored


def test_functions_and_localstack_share_one_dynamodb(deployment: Deployment) -> None:
    """The api function reaches DynamoDB by its own endpoint, the tests through LocalStack's:
    a study the function declares is read through LocalStack, and a study forgotten through
    LocalStack is one the function no longer knows."""
    dynamodb = aws("dynamodb")
    study_id = deployment.api.declare({"one.dcm": 1000})["study_id"]
    assert deployment.api.status(study_id).status == 200
    keys = {"TableName": deployment.outputs["StatusTableName"],
            "KeyConditionExpression": "study_id = :id",
            "ExpressionAttributeValues": {":id": {"S": study_id}}}
    items = dynamodb.query(**keys)["Items"]
    assert [item["state"]["S"] for item in items if item["item"]["S"] == "study"] == \
        ["AWAITING_UPLOAD"]
    for item in items:
        dynamodb.delete_item(TableName=keys["TableName"],
                             Key={"study_id": item["study_id"], "item": item["item"]})
    assert dynamodb.query(**keys)["Items"] == []
    assert deployment.api.status(study_id).status == 404


def invocations_counted(function_name: str) -> float:
    """The ``AWS/Lambda`` ``Invocations`` sum of a function over the last hour."""
    now = time.time()
    points = aws("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda", MetricName="Invocations",
        Dimensions=[{"Name": "FunctionName", "Value": function_name}],
        StartTime=now - 3600, EndTime=now + 60, Period=3600, Statistics=["Sum"])["Datapoints"]
    return sum(point["Sum"] for point in points)


def test_each_lambda_invocation_is_counted_once(deployment: Deployment) -> None:
    function_name = deployment.outputs["ApiFunctionName"]
    lambda_client = aws("lambda")
    lambda_client.invoke(FunctionName=function_name, Payload=HEALTH_EVENT.read_bytes())
    time.sleep(2)  # the count of that first invocation is sent
    before = invocations_counted(function_name)
    for _ in range(7):
        answer = lambda_client.invoke(FunctionName=function_name,
                                      Payload=HEALTH_EVENT.read_bytes())
        assert "FunctionError" not in answer
    deadline = time.monotonic() + 20
    while invocations_counted(function_name) < before + 7 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.5)  # one flush more: a count sent twice would show now
    assert invocations_counted(function_name) == before + 7



def test_the_local_outputs_name_the_api_url_that_answers_here(deployment: Deployment) -> None:
    """The template's ApiUrl is AWS's form (https://ID.execute-api...), which does not
    resolve on this machine: ``stack outputs`` gives the local one, and ``stack env``
    quiets awslocal's deprecation banner."""
    environment = stack_json("env", "--json", STACK_NAME)

    assert deployment.outputs["ApiUrl"] == environment["PACS_VALIDATOR_API"]
    assert deployment.api.status("0" * 32).status == 404
    assert environment["DISABLE_DEPRECATION_NOTICE"] == "1"
