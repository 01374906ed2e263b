"""Replaying events that failed every retry: dead-letter messages go back to their functions.

Two kinds of message wait in the dead-letter queues. Lambda's on-failure destination wraps
the event with the function it was for (``requestContext.functionArn``, ``requestPayload``);
EventBridge's target dead-letter queue holds the event itself and names the function in the
``TARGET_ARN`` message attribute. Each is invoked again, asynchronously, with ``redrive`` set,
so the handler first takes a FAILED study back to the state it failed in; the message is
deleted once Lambda has accepted the invocation. Messages of any other shape stay queued.

    python -m pacs_validator.aws.redrive QUEUE_URL [QUEUE_URL ...]   # on AWS or LocalStack
    local-runtime/stack redrive [--stack NAME]                       # the local stack's queues
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3

from pacs_validator.contract.invocations import REDRIVE


@dataclass(frozen=True)
class Replay:
    function: str
    payload: dict[str, Any]


def replay_of(body: str, attributes: Mapping[str, Any]) -> Replay | None:
    """The invocation a dead-letter message stands for, or None for an unknown shape."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if isinstance(message.get("requestContext"), dict) and "requestPayload" in message:
        payload = message["requestPayload"]
        function = message["requestContext"].get("functionArn")
    else:
        payload = message
        function = attributes.get("TARGET_ARN", {}).get("StringValue")
    if not function or not isinstance(payload, dict):
        return None
    return Replay(function=str(function), payload={**payload, REDRIVE: True})


def redrive(queue_url: str, sqs: Any | None = None, lambda_client: Any | None = None
            ) -> tuple[int, int]:
    """Replay every message of ``queue_url``; (replayed, left in the queue)."""
    sqs = sqs or boto3.client("sqs")
    lambda_client = lambda_client or boto3.client("lambda")
    replayed = left = 0
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"], VisibilityTimeout=60,
                                       WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return replayed, left
        for message in messages:
            replay = replay_of(message["Body"], message.get("MessageAttributes", {}))
            if replay is None:
                left += 1
                continue
            lambda_client.invoke(FunctionName=replay.function, InvocationType="Event",
                                 Payload=json.dumps(replay.payload).encode())
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            replayed += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay dead-letter messages to their "
                                                 "functions.")
    parser.add_argument("queues", nargs="+", metavar="QUEUE_URL")
    args = parser.parse_args(argv)
    for queue in args.queues:
        replayed, left = redrive(queue)
        print(f"{queue}: {replayed} replayed, {left} of unknown shape left in the queue")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
