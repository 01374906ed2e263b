"""Integration fixtures: the handlers called directly against moto's in-process AWS.

Each test gets fresh buckets, tables and an event bus whose events are copied to an SQS
queue, so tests can assert on what was published.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from api_contract import check_answer
from aws_lambda_powertools.utilities import parameters
from document_schemas import METADATA, VALIDATION_REPORT, check
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from pacs_validator.contract.invocations import Work, chunk_payload, sweep_payload

ROOT = Path(__file__).resolve().parents[2]
STACK = "pv-test"
ACCOUNT = "123456789012"
UPLOADS = f"{STACK}-uploads-{ACCOUNT}"
STORE = f"{STACK}-store-{ACCOUNT}"
BUS = f"{STACK}-bus"
STATUS_TABLE = f"{STACK}-status"
IDEMPOTENCY_TABLE = f"{STACK}-idempotency"
TOKENS_SECRET = f"{STACK}-api-tokens"
API_TOKEN = "integration-test-token-0123456789"
"""The bearer token in the stack's token secret, sent by :func:`api_event` by default."""
TOKEN_SECRET = {"admins": ["initial"], "initial": API_TOKEN}
"""The token secret as the template generates it: one admin label, ``initial``."""
FINGERPRINT_SECRET = f"{STACK}-fingerprint-key"
FINGERPRINT_KEY = "integrationtestfingerprintkey0123456789abcdefghijklmnopqrstuvwxyz"
"""The validator's fingerprint key, 64 letters and digits as the template generates it."""


@dataclass
class Stack:
    s3: Any
    sqs: Any
    events_queue_url: str
    functions: dict[str, ModuleType]
    seen: list[dict[str, Any]] = field(default_factory=list)
    chunk_events: list[dict[str, Any]] = field(default_factory=list)
    """Chunk events the pipeline handed out and no test has delivered yet."""

    def handler(self, name: str) -> ModuleType:
        return self.functions[name]

    def version_of(self, bucket: str, key: str) -> str:
        """The id of the object's current version (what a notification of it names)."""
        return str(self.s3.head_object(Bucket=bucket, Key=key)["VersionId"])

    def published(self) -> list[dict[str, Any]]:
        """Every event put on the bus so far, in order."""
        events = self.seen
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.events_queue_url, MaxNumberOfMessages=10
            ).get("Messages", [])
            if not messages:
                return events
            for message in messages:
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


class RecordingDispatcher:
    """Keeps the chunk events the pipeline hands out, for the test to deliver (in place of
    Lambda's asynchronous invocations)."""

    def __init__(self, pending: list[dict[str, Any]]) -> None:
        self.pending = pending

    def dispatch(self, study_id: str, chunks: int, work: Work) -> None:
        self.pending.extend(chunk_payload(study_id, index, work) for index in range(chunks))

    def dispatch_sweep(self, study_ids: Sequence[str], overdue_at: int) -> None:
        self.pending.append(sweep_payload(study_ids, overdue_at))


def create_tables(dynamodb: Any) -> None:
    """The status and idempotency tables as template.yaml declares them."""
    dynamodb.create_table(
        TableName=STATUS_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "study_id", "AttributeType": "S"},
            {"AttributeName": "item", "AttributeType": "S"},
            {"AttributeName": "open_shard", "AttributeType": "S"},
            {"AttributeName": "deadline", "AttributeType": "N"},
            {"AttributeName": "open_owner", "AttributeType": "S"},
            {"AttributeName": "owner", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "study_id", "KeyType": "HASH"},
                   {"AttributeName": "item", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "open-deadline-index",
            "KeySchema": [
                {"AttributeName": "open_shard", "KeyType": "HASH"},
                {"AttributeName": "deadline", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }, {
            "IndexName": "open-owner-index",
            "KeySchema": [{"AttributeName": "open_owner", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }, {
            "IndexName": "owner-created-index",
            "KeySchema": [
                {"AttributeName": "owner", "KeyType": "HASH"},
                {"AttributeName": "created_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "INCLUDE",
                           "NonKeyAttributes": ["study_instance_uid"]},
        }],
    )
    dynamodb.create_table(
        TableName=IDEMPOTENCY_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )


def _observe_bus(events: Any, sqs: Any) -> str:
    queue_url = sqs.create_queue(QueueName="observed-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    events.create_event_bus(Name=BUS)
    events.put_rule(Name="observe-all", EventBusName=BUS,
                    EventPattern=json.dumps({"source": ["pacs-validator"]}))
    events.put_targets(Rule="observe-all", EventBusName=BUS,
                       Targets=[{"Id": "queue", "Arn": queue_arn}])
    return str(queue_url)


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` under a unique module name, fresh each time."""
    module_name = f"pv_function_{name}"
    sys.modules.pop(module_name, None)
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def serialize_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """One DynamoDB operation at a time on moto, as concurrent tests need: DynamoDB makes
    every item write atomic (an ``ADD`` counter, a condition), moto in process does not lock
    (the local runtime's plugin does the same for LocalStack)."""
    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    def serialized(self: DynamoHandler) -> Any:
        with lock:
            return call_action(self)

    monkeypatch.setattr(DynamoHandler, "call_action", serialized)


TEST_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "UPLOADS_BUCKET": UPLOADS,
    "STORE_BUCKET": STORE,
    "STATUS_TABLE": STATUS_TABLE,
    "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
    "EVENT_BUS_NAME": BUS,
    "MAX_UPLOAD_BYTES": str(5 * 1024 * 1024),
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "PacsValidatorTest",
    "POWERTOOLS_SERVICE_NAME": "pacs-validator-test",
    "API_AUTH": "TOKEN",
    "API_TOKENS_SECRET": TOKENS_SECRET,
    "FINGERPRINT_KEY_SECRET": FINGERPRINT_SECRET,
}
"""The functions' environment as the template sets it, on moto."""


@contextmanager
def moto_stack(setenv: Callable[[str, str], None],
               changes: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """The stack on moto: buckets, tables, token secret, an observed bus, and the three
    functions loaded with :data:`TEST_ENVIRONMENT` and ``changes`` to it (``setenv`` sets
    each variable)."""
    for key, value in {**TEST_ENVIRONMENT, **(changes or {})}.items():
        setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (UPLOADS, STORE):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration={"Status": "Enabled"})
        create_tables(boto3.client("dynamodb"))
        boto3.client("secretsmanager").create_secret(
            Name=TOKENS_SECRET, SecretString=json.dumps(TOKEN_SECRET))
        boto3.client("secretsmanager").create_secret(
            Name=FINGERPRINT_SECRET, SecretString=FINGERPRINT_KEY)
        parameters.clear_caches()  # tokens cached by an earlier test's function
        sqs = boto3.client("sqs")
        queue_url = _observe_bus(boto3.client("events"), sqs)
        functions = {name: load_function(name) for name in ("api", "validator", "descriptor")}
        functions["api"].lambda_handler = contract_checked(functions["api"].lambda_handler)
        stack = Stack(s3=s3, sqs=sqs, events_queue_url=queue_url, functions=functions)
        for name in ("validator", "descriptor"):
            functions[name].pipeline.services.dispatcher = RecordingDispatcher(stack.chunk_events)
        yield stack
        check_stored_documents(stack)


DOCUMENT_SCHEMAS = {"metadata.json": METADATA, "validation.json": VALIDATION_REPORT}
"""The store's documents by leaf name, and the schema each is held to."""


def check_stored_documents(stack: Stack) -> None:
    """Every ``metadata.json`` and ``validation.json`` a test's studies left in the store,
    held to the package's JSON Schemas."""
    for key in stack.keys(STORE):
        schema = DOCUMENT_SCHEMAS.get(key.rsplit("/", 1)[-1])
        if schema is not None:
            body = stack.s3.get_object(Bucket=STORE, Key=key)["Body"].read()
            check(schema, json.loads(body), key)


def proxy_headers(response: Mapping[str, Any]) -> dict[str, str]:
    """An API Gateway proxy answer's headers, several values of one joined as HTTP does."""
    headers = {name: str(value) for name, value in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(map(str, values))
    return headers


def contract_checked(handler: Callable[[dict[str, Any], Any], dict[str, Any]]
                     ) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The API function's handler, each answer held to docs/api/openapi.yaml (see
    ``api_contract``): every integration test that calls the API checks its contract."""

    def checked(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = handler(event, context)
        body = str(response.get("body") or "")
        raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
        check_answer(str(event["httpMethod"]), str(event["path"]), int(response["statusCode"]),
                     proxy_headers(response), raw, through_gateway=False)
        return response

    return checked


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    serialize_dynamodb(monkeypatch)
    with moto_stack(monkeypatch.setenv) as moto:
        yield moto


@pytest.fixture
def study_wide_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack deployed with ``StudyWideForms=Enabled``."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    serialize_dynamodb(monkeypatch)
    with moto_stack(monkeypatch.setenv, {"STUDY_WIDE_FORMS": "Enabled"}) as moto:
        yield moto


class FakeContext:
    """The parts of a Lambda context that Powertools reads."""

    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:test-function"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "test-function-logs"
    log_stream_name = "stream"

    remaining_millis = 300_000
    """The validator's and descriptor's timeout, untouched."""

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


def s3_put_event(bucket: str, key: str, sequencer: str, size: int = 1,
                 version_id: str | None = None) -> dict[str, Any]:
    """An S3 ObjectCreated notification as S3 sends it (the key URL-encoded; ``versionId``
    when the upload made a version)."""
    from urllib.parse import quote_plus

    return {"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T00:00:00.000Z",
        "eventName": "ObjectCreated:Post",
        "userIdentity": {"principalId": "test"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "r", "x-amz-id-2": "i"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "test",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "test"},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": "etag",
                       "sequencer": sequencer,
                       **({"versionId": version_id} if version_id else {})},
        },
    }]}


def api_event(method: str, path: str, body: Any = None,
              path_parameters: dict[str, str] | None = None, *,
              raw_body: str | None = None, headers: dict[str, str] | None = None,
              base64_encoded: bool = False, query: dict[str, str] | None = None,
              token: str | None = API_TOKEN) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event: ``body`` is sent as JSON, ``raw_body`` as is;
    ``headers`` replace the default ``Content-Type: application/json``; ``token`` (the
    stack's by default, None for none) is sent as ``Authorization: Bearer``."""
    headers = {"Content-Type": "application/json"} if headers is None else dict(headers)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return {
        "resource": path, "path": path, "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": (
            {k: [v] for k, v in query.items()} if query else None),
        "pathParameters": path_parameters, "stageVariables": None,
        "requestContext": {"requestId": "req", "stage": "test", "path": path,
                           "httpMethod": method, "resourcePath": path,
                           "identity": {"sourceIp": "127.0.0.1"}},
        "body": raw_body if raw_body is not None else (
            json.dumps(body) if body is not None else None),
        "isBase64Encoded": base64_encoded,
    }
