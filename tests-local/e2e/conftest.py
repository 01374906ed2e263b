"""End-to-end fixtures: the application deployed on a running LocalStack.

`make test` starts LocalStack and deploys the stack before these run; here the tests only
find the deployment (stack outputs, API URL) and observe the event bus through an SQS queue.
They fail, not skip, when no deployment answers: an e2e run that tests nothing is a lie.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from pacs_validator.cli.client import PacsClient

ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = ROOT / "local-runtime" / "stack"
STACK_NAME = os.environ.get("PACS_STACK_NAME", "pacs-validator")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")


def _stack_json(*args: str) -> Any:
    completed = subprocess.run([str(STACK_SCRIPT), *args], capture_output=True, text=True,
                               timeout=120, check=False)
    if completed.returncode != 0:
        pytest.fail(f"local-runtime/stack {' '.join(args)} failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout)


def aws(service: str) -> Any:
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


@dataclass
class Deployment:
    outputs: dict[str, str]
    api: PacsClient
    queue_url: str
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def uploads_bucket(self) -> str:
        return self.outputs["UploadsBucketName"]

    @property
    def store_bucket(self) -> str:
        return self.outputs["StoreBucketName"]

    def keys(self, bucket: str, prefix: str) -> list[str]:
        pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        body: bytes = aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def events_for(self, study_id: str, until: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The study's events, in the order they were put, once ``until`` has been seen."""
        sqs = aws("sqs")
        deadline = time.monotonic() + timeout
        while True:
            mine = [e for e in self.seen if e["detail"].get("study_id") == study_id]
            if any(e["detail-type"] == until for e in mine) or time.monotonic() > deadline:
                return sorted(mine, key=lambda e: float(e["detail"]["emitted_at"]))
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", [])
            for message in messages:
                self.seen.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url,
                                   ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    outputs = _stack_json("outputs", STACK_NAME)
    environment = _stack_json("env", "--json", STACK_NAME)
    sqs, events = aws("sqs"), aws("events")
    queue_url = sqs.create_queue(QueueName=f"e2e-observer-{int(time.time())}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url,
                                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"e2e-observe-{int(time.time())}"
    events.put_rule(Name=rule, EventBusName=outputs["EventBusName"],
                    EventPattern=json.dumps({"source": ["pacs-validator"]}))
    events.put_targets(Rule=rule, EventBusName=outputs["EventBusName"],
                       Targets=[{"Id": "observer", "Arn": queue_arn}])
    api = PacsClient(environment["PACS_VALIDATOR_API"],
                     token=environment.get("PACS_VALIDATOR_TOKEN"))
    yield Deployment(outputs=outputs, api=api, queue_url=queue_url)
    events.remove_targets(Rule=rule, EventBusName=outputs["EventBusName"], Ids=["observer"])
    events.delete_rule(Name=rule, EventBusName=outputs["EventBusName"])
    sqs.delete_queue(QueueUrl=queue_url)
