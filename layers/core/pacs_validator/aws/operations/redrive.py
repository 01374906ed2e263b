"""Replaying events that failed every retry: dead-letter messages go back to their functions.

Two kinds of message wait in the dead-letter queues. Lambda's on-failure destination wraps
the event with the function it was for (``requestContext.functionArn``, ``requestPayload``);
EventBridge's target dead-letter queue holds the event itself and names the function in the
``TARGET_ARN`` message attribute. Each is invoked again, asynchronously, with ``redrive`` set,
so the handler first takes a FAILED study back to the state it failed in; the message is
deleted once Lambda has accepted the invocation. Messages of any other shape stay queued.

A message names its function, and whoever may send to a queue writes that name: only the
stack's own functions (its validator and descriptor, from the stack's outputs) are invoked.
A message naming any other function stays queued and is reported, never invoked.

    python -m pacs_validator.aws.operations.redrive --stack NAME [QUEUE_URL ...]  # anywhere
    local-runtime/stack redrive [--stack NAME]                         # the local stack
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

from pacs_validator.contract.invocations import REDRIVE

REDRIVEN_FUNCTIONS = ("ValidatorFunctionName", "DescriptorFunctionName")
"""The stack outputs naming the functions whose failed events reach a dead-letter queue."""
DEAD_LETTER_QUEUES = "DeadLetterQueueUrl"
"""How the stack outputs naming its dead-letter queues end."""


@dataclass(frozen=True)
class Replay:
    function: str
    payload: dict[str, Any]


@dataclass
class Redriven:
    """What a redrive did with a queue's messages."""

    replayed: int = 0
    unknown: int = 0
    """Messages of no known shape, left in the queue."""
    refused: list[str] = field(default_factory=list)
    """The functions named by messages left in the queue because the stack has no such
    function (one entry per message)."""


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


def unqualified(function_arn: str) -> str:
    """A function's ARN without its version or alias (``arn:aws:lambda:R:A:function:NAME``),
    as a message names the function it was for with or without one."""
    return ":".join(function_arn.split(":")[:7])


def function_arns(names: Collection[str], lambda_client: Any) -> frozenset[str]:
    """The unqualified ARNs of the functions ``names`` (names or ARNs): comparing whole ARNs,
    a message naming a function of the same name in another account or region is refused."""
    return frozenset(
        unqualified(lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"])
        for name in names)


def redrive(queue_url: str, functions: Collection[str], sqs: Any | None = None,
            lambda_client: Any | None = None) -> Redriven:
    """Replay every message of ``queue_url`` meant for one of ``functions`` (names or ARNs);
    the others stay in the queue."""
    sqs = sqs or boto3.client("sqs")
    lambda_client = lambda_client or boto3.client("lambda")
    allowed = function_arns(functions, lambda_client)
    outcome = Redriven()
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"], VisibilityTimeout=60,
                                       WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return outcome
        for message in messages:
            replay = replay_of(message["Body"], message.get("MessageAttributes", {}))
            if replay is None:
                outcome.unknown += 1
            elif unqualified(replay.function) not in allowed:
                outcome.refused.append(replay.function)
            else:
                lambda_client.invoke(FunctionName=replay.function, InvocationType="Event",
                                     Payload=json.dumps(replay.payload).encode())
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                outcome.replayed += 1


def stack_outputs(stack_name: str, cloudformation: Any | None = None) -> dict[str, str]:
    """The outputs of the stack ``stack_name``, by key."""
    cloudformation = cloudformation or boto3.client("cloudformation")
    [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def main(argv: list[str] | None = None) -> int:
    """Redrive the stack's dead-letter queues (or those given) to the stack's functions;
    1 when a message named a function the stack does not have."""
    parser = argparse.ArgumentParser(description="Replay dead-letter messages to the stack's "
                                                 "functions.")
    parser.add_argument("--stack", required=True,
                        help="the deployed stack: its functions are the only ones invoked")
    parser.add_argument("queues", nargs="*", metavar="QUEUE_URL",
                        help="default: the stack's dead-letter queues")
    args = parser.parse_args(argv)
    outputs = stack_outputs(args.stack)
    functions = [outputs[key] for key in REDRIVEN_FUNCTIONS]
    queues = args.queues or [url for key, url in sorted(outputs.items())
                             if key.endswith(DEAD_LETTER_QUEUES)]
    foreign = 0
    for queue in queues:
        outcome = redrive(queue, functions)
        print(f"{queue}: {outcome.replayed} replayed, {outcome.unknown} of unknown shape "
              f"left in the queue")
        for function in sorted(set(outcome.refused)):
            print(f"{queue}: {outcome.refused.count(function)} message(s) for {function}, "
                  f"not a function of stack {args.stack}: left in the queue, not invoked")
        foreign += len(outcome.refused)
    return 1 if foreign else 0


if __name__ == "__main__":
    raise SystemExit(main())
