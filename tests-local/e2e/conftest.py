"""End-to-end fixtures: the application deployed on a running LocalStack.

`make test` starts LocalStack and deploys the stack before these run; here the tests only
find the deployment (stack outputs, API URL) and observe the event bus through an SQS queue.
They fail, not skip, when no deployment answers: an e2e run that tests nothing is a lie.

Every answer of the deployment's API that a test gets through the package's HTTP client
(:class:`PacsClient`, or its ``request``) is held to ``docs/api/openapi.yaml`` on the way
(:class:`AnswerCheck`), and every ``metadata.json`` and ``validation.json`` the session's
studies left in the store to the package's JSON Schemas.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import urllib.request
import urllib.response
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from api_contract import ContractViolation, check_answer
from boto3.dynamodb.conditions import Attr
from document_schemas import METADATA, VALIDATION_REPORT, check

from pacs_validator.transfer import client
from pacs_validator.transfer.client import PacsClient

ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = ROOT / "local-runtime" / "stack"
STACK_NAME = os.environ.get("PACS_STACK_NAME", "pacs-validator")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")


def stack_json(*args: str) -> Any:
    completed = subprocess.run([str(STACK_SCRIPT), *args], capture_output=True, text=True,
                               timeout=120, check=False)
    if completed.returncode != 0:
        pytest.fail(f"local-runtime/stack {' '.join(args)} failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout)


DOCUMENT_SCHEMAS = {"metadata.json": METADATA, "validation.json": VALIDATION_REPORT}
"""The store's documents by leaf name, and the schema each is held to."""


def check_stored_document(key: str, data: bytes) -> None:
    """A ``metadata.json`` or ``validation.json`` read from the store, held to its schema."""
    schema = DOCUMENT_SCHEMAS.get(key.rsplit("/", 1)[-1])
    if schema is not None:
        check(schema, json.loads(data), key)


class AnswerCheck(urllib.request.BaseHandler):
    """A urllib response processor in the package client's opener: each answer from the API
    (``api_base`` and below) is held to the OpenAPI document before the client reads it,
    the test failing on a mismatch. Violations are also kept, for the rare caller that
    swallows an exception (a thread nobody joins)."""

    handler_order = 100
    """Before urllib's error processor, so 4xx answers are checked too."""

    def __init__(self) -> None:
        self.api_base: str | None = None
        self.checked = 0
        self.violations: list[str] = []

    def http_response(self, request: urllib.request.Request,
                      response: Any) -> Any:
        url = request.full_url
        if self.api_base is None or not (url == self.api_base
                                         or url.startswith(self.api_base + "/")):
            return response
        body = response.read()
        path = urlsplit(url).path[len(urlsplit(self.api_base).path):]
        self.checked += 1
        try:
            check_answer(request.get_method(), path, response.status, dict(response.headers),
                         body, through_gateway=True)
        except ContractViolation as violation:
            self.violations.append(str(violation))
            raise
        replayed = urllib.response.addinfourl(io.BytesIO(body), response.headers, url,
                                              response.status)
        replayed.msg = response.reason
        return replayed

    https_response = http_response


ANSWERS = AnswerCheck()
client._OPENER.add_handler(ANSWERS)  # the one opener every request of the client goes through


@pytest.fixture(autouse=True)
def answers_conform() -> Iterator[None]:
    """Fails a test that got an answer the OpenAPI document does not allow, even one whose
    exception was swallowed."""
    yield
    violations, ANSWERS.violations[:] = list(ANSWERS.violations), []
    assert not violations, violations[0]


SUMMARY: list[str] = []
"""Lines a test module leaves for the end of the run (its figures)."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ANSWERS.checked:
        terminalreporter.write_line(f"API answers checked against docs/api/openapi.yaml: "
                                    f"{ANSWERS.checked}")
    for line in SUMMARY:
        terminalreporter.write_line(line)


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
        """An object's bytes; a ``metadata.json`` or ``validation.json`` is held to its
        schema first."""
        body: bytes = aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        check_stored_document(key, body)
        return body

    def documents_since(self, since: datetime) -> list[str]:
        """The store's ``metadata.json`` and ``validation.json`` written since ``since``."""
        pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=self.store_bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", [])
                      if o["Key"].rsplit("/", 1)[-1] in DOCUMENT_SCHEMAS
                      and o["LastModified"] >= since)

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


def forget_stored_instances(table_name: str) -> int:
    """Delete the index of stored SOP instances (``sop#`` items); how many there were."""
    table = boto3.resource("dynamodb", endpoint_url=ENDPOINT, region_name="us-east-1",
                           aws_access_key_id="test",
                           aws_secret_access_key="test").Table(table_name)
    pages = table.meta.client.get_paginator("scan").paginate(
        TableName=table_name, ProjectionExpression="study_id, #item",
        ExpressionAttributeNames={"#item": "item"},
        FilterExpression=Attr("study_id").begins_with("sop#"))
    keys = [item for page in pages for item in page["Items"]]
    with table.batch_writer() as batch:
        for key in keys:
            batch.delete_item(Key=key)
    return len(keys)


@pytest.fixture(autouse=True)
def instances_stored_by_this_test_alone(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with an empty index of stored instances: the tests send pydicom's
    same few files again and again, and each expects its study stored under its own id.
    What a study sent again gets is the subject of ``test_duplicates.py`` alone."""
    if "deployment" in request.fixturenames:
        deployment: Deployment = request.getfixturevalue("deployment")
        forget_stored_instances(deployment.outputs["StatusTableName"])
    yield


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    started = datetime.now(timezone.utc).replace(microsecond=0)
    outputs = stack_json("outputs", STACK_NAME)
    environment = stack_json("env", "--json", STACK_NAME)
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
    ANSWERS.api_base = api.api_base
    deployed = Deployment(outputs=outputs, api=api, queue_url=queue_url)
    yield deployed
    ANSWERS.api_base = None
    events.remove_targets(Rule=rule, EventBusName=outputs["EventBusName"], Ids=["observer"])
    events.delete_rule(Name=rule, EventBusName=outputs["EventBusName"])
    sqs.delete_queue(QueueUrl=queue_url)
    documents = deployed.documents_since(started)  # every report the session's studies left
    for key in documents:
        deployed.read(deployed.store_bucket, key)
    SUMMARY.append(f"stored reports checked against the package's schemas: {len(documents)}")


TOKEN_CACHE_SECONDS = 5
"""How long the API reuses a token it has read: ``TokenCacheSeconds`` of the local
deployment (Makefile, DEPLOY_PARAMETERS)."""


@pytest.fixture
def two_sites(deployment: Deployment) -> Iterator[dict[str, PacsClient]]:
    """Two more labels in the token secret, ``site-a`` and ``site-b``, each with a fresh
    token of its own, beside the admin ``initial``; the secret as it was afterwards. A
    label lists its own studies newest first, where an admin's list has no order."""
    secrets = aws("secretsmanager")
    arn = deployment.outputs["ApiTokensSecretArn"]
    before = secrets.get_secret_value(SecretId=arn)["SecretString"]
    tokens = {label: uuid.uuid4().hex + uuid.uuid4().hex for label in ("site-a", "site-b")}
    secrets.put_secret_value(SecretId=arn,
                             SecretString=json.dumps({**json.loads(before), **tokens}))
    time.sleep(TOKEN_CACHE_SECONDS + 1)
    base = deployment.api.api_base
    yield {"admin": deployment.api,
           **{label: PacsClient(base, token=token) for label, token in tokens.items()}}
    secrets.put_secret_value(SecretId=arn, SecretString=before)
