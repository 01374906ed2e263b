"""Replaying dead-letter messages: both shapes of message go back to their function."""

from __future__ import annotations

import json
from typing import Any

import boto3
from moto import mock_aws

from pacs_validator.aws.redrive import REDRIVE, redrive, replay_of

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:pv-descriptor:$LATEST"
S3_EVENT = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "incoming/x.dcm"}}}]}
BRIDGE_EVENT = {"detail-type": "validation.success", "source": "pacs-validator",
                "detail": {"study_id": "0" * 32, "event_id": "e"}}


class RecordingLambda:
    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []

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


def test_redrive_replays_and_deletes_known_messages_and_leaves_the_rest() -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody=on_failure_record(S3_EVENT))
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(BRIDGE_EVENT),
                         MessageAttributes={"TARGET_ARN": {"StringValue": FUNCTION,
                                                           "DataType": "String"}})
        sqs.send_message(QueueUrl=queue, MessageBody="garbage")
        functions = RecordingLambda()

        assert redrive(queue, sqs=sqs, lambda_client=functions) == (2, 1)
        assert [i["InvocationType"] for i in functions.invocations] == ["Event", "Event"]
        assert sorted(json.dumps(i["Payload"], sort_keys=True) for i in functions.invocations) \
            == sorted(json.dumps({**e, REDRIVE: True}, sort_keys=True)
                      for e in (S3_EVENT, BRIDGE_EVENT))
        left = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        assert int(left["ApproximateNumberOfMessagesNotVisible"]) == 1
