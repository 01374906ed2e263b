"""Replaying dead-letter messages: both shapes of message go back to their function, when
it is one of the stack's."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pacs_validator.aws.operations import redrive as redrive_module
from pacs_validator.aws.operations.redrive import Redriven, main, redrive, replay_of
from pacs_validator.contract.invocations import REDRIVE

ACCOUNT = "123456789012"
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:pv-descriptor:$LATEST"
STACK_FUNCTIONS = ["pv-validator", "pv-descriptor"]
FOREIGN = [f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:someone-elses",
           "arn:aws:lambda:us-east-1:999999999999:function:pv-descriptor"]
S3_EVENT = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "incoming/x.dcm"}}}]}
BRIDGE_EVENT = {"detail-type": "validation.success", "source": "pacs-validator",
                "detail": {"study_id": "0" * 32, "event_id": "e"}}


class RecordingLambda:
    """moto's Lambda, which knows the stack's functions, with invocations recorded instead
    of run."""

    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []
        self.moto = boto3.client("lambda", region_name="us-east-1")

    def get_function(self, **kwargs: Any) -> Any:
        return self.moto.get_function(**kwargs)

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invocations.append({**kwargs, "Payload": json.loads(kwargs["Payload"])})
        return {"StatusCode": 202}


def on_failure_record(payload: dict[str, Any]) -> str:
    """What Lambda's on-failure destination puts in the queue when retries run out."""
    return json.dumps({"version": "1.0", "timestamp": "2026-11-29T00:00:00Z",
                       "requestContext": {"requestId": "r", "functionArn": FUNCTION,
                                          "condition": "RetriesExhausted",
                                          "approximateInvokeCount": 3},
                       "requestPayload": payload,
                       "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
                       "responsePayload": {"errorType": "ClientError"}})


def test_lambda_destination_records_replay_their_payload_to_their_function() -> None:
    replay = replay_of(on_failure_record(S3_EVENT), {})
    assert replay is not None
    assert replay.function == FUNCTION
    assert replay.payload == {**S3_EVENT, REDRIVE: True}


def test_eventbridge_dead_letters_replay_to_the_target_they_name() -> None:
    attributes = {"TARGET_ARN": {"StringValue": FUNCTION, "DataType": "String"}}
    replay = replay_of(json.dumps(BRIDGE_EVENT), attributes)
    assert replay is not None
    assert (replay.function, replay.payload) == (FUNCTION, {**BRIDGE_EVENT, REDRIVE: True})


def test_messages_of_unknown_shape_are_not_replayed() -> None:
    for body in ("not json", "[1, 2]", json.dumps(BRIDGE_EVENT)):
        assert replay_of(body, {}) is None


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto with the stack's two functions deployed; its SQS client."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        role = boto3.client("iam").create_role(
            RoleName="pv", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return None\n")
        for name in STACK_FUNCTIONS:
            boto3.client("lambda").create_function(
                FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                Code={"ZipFile": code.getvalue()})
        yield boto3.client("sqs")


def queued(sqs: Any, queue: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + \
        int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_redrive_replays_and_deletes_known_messages_and_leaves_the_rest(aws: Any) -> None:
    sqs = aws
    queue = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=on_failure_record(S3_EVENT))
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(BRIDGE_EVENT),
                     MessageAttributes={"TARGET_ARN": {"StringValue": FUNCTION,
                                                       "DataType": "String"}})
    sqs.send_message(QueueUrl=queue, MessageBody="garbage")
    functions = RecordingLambda()

    assert redrive(queue, STACK_FUNCTIONS, sqs=sqs, lambda_client=functions) \
        == Redriven(replayed=2, unknown=1)
    assert [i["InvocationType"] for i in functions.invocations] == ["Event", "Event"]
    assert sorted(json.dumps(i["Payload"], sort_keys=True) for i in functions.invocations) \
        == sorted(json.dumps({**e, REDRIVE: True}, sort_keys=True)
                  for e in (S3_EVENT, BRIDGE_EVENT))
    left = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert int(left["ApproximateNumberOfMessagesNotVisible"]) == 1


def test_messages_for_functions_outside_the_stack_are_refused_and_stay_queued(aws: Any) -> None:
    sqs = aws
    queue = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=on_failure_record(S3_EVENT))
    for function in FOREIGN:
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(BRIDGE_EVENT),
                         MessageAttributes={"TARGET_ARN": {"StringValue": function,
                                                           "DataType": "String"}})
    functions = RecordingLambda()

    outcome = redrive(queue, STACK_FUNCTIONS, sqs=sqs, lambda_client=functions)

    assert [i["FunctionName"] for i in functions.invocations] == [FUNCTION]
    assert outcome == Redriven(replayed=1, refused=FOREIGN)
    assert queued(sqs, queue) == 2


def test_the_command_redrives_to_the_stacks_functions_only_and_says_so(
        aws: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The stack's outputs as CloudFormation answers them (moto's CloudFormation needs
    packages the tests do not install)."""
    sqs = aws
    queue = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    outputs = {"ValidatorFunctionName": "pv-validator", "DescriptorFunctionName": "pv-descriptor",
               "ApiFunctionName": "pv-api", "ValidatorDeadLetterQueueUrl": queue}
    monkeypatch.setattr(redrive_module, "stack_outputs",
                        lambda stack: outputs if stack == "pv" else {})
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(BRIDGE_EVENT),
                     MessageAttributes={"TARGET_ARN": {"StringValue": FOREIGN[0],
                                                       "DataType": "String"}})

    assert main(["--stack", "pv"]) == 1

    out = capsys.readouterr().out
    assert f"1 message(s) for {FOREIGN[0]}, not a function of stack pv" in out
    assert queued(sqs, queue) == 1
