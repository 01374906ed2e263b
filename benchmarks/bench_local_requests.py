"""LocalStack's CPU per request, by kind, on the local (Docker-less) runtime.

LocalStack is one process under one interpreter lock, and what each request costs it sets
much of the local pipeline's pace (bench_e2e.py). This sends one kind of request at a time,
N times in a row from one client through LocalStack's port, and divides by N the CPU (read
from /proc, as bench_e2e.py does) of LocalStack and of its DynamoDB backend (the process
moto's DynamoDB runs in):
- the HTTP floor (``GET /_localstack/health``);
- the DynamoDB and S3 calls a validator makes per file, on scratch items and objects (a
  function's own DynamoDB calls go to the backend directly: they cost the backend's figure
  and none of LocalStack's);
- a synchronous and an asynchronous invoke of the API function's ``GET /health`` (the
  asynchronous figure includes LocalStack's internal queue and a settling pause).

Needs a deployed stack (`make deploy`). Not part of the test suite; results go to
benchmarks/results/local-requests-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
from bench_e2e import RESULTS, ROOT, cpu_seconds, stack_json

ENDPOINT = "http://127.0.0.1:4566"
PARTS = ("localstack", "dynamodb")
SETTLE_SECONDS = 5.0
"""How long the asynchronous invocations are given to run before LocalStack's CPU is read."""

HEALTH_EVENT = ROOT / "events" / "api-health.json"
"""The API Gateway event of a `GET /health`, as `sam local invoke` uses it."""


def client(service: str) -> Any:
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def used_since(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds of LocalStack and its DynamoDB backend since ``before``."""
    now = cpu_seconds() or {}
    return {part: now[part] - before[part] for part in PARTS if part in before and part in now}


def cpu_ms_per_call(call: Callable[[], object], count: int, settle: float = 0.0
                    ) -> dict[str, float]:
    """CPU per call, in ms, of LocalStack and its DynamoDB backend, over ``count`` calls
    (after one warm-up call); what they use idle over ``settle`` seconds is taken off."""
    call()
    idle: dict[str, float] = {}
    if settle:
        before = cpu_seconds() or {}
        time.sleep(settle)
        idle = used_since(before)
    before = cpu_seconds() or {}
    for _ in range(count):
        call()
    time.sleep(settle)
    return {part: round((used - idle.get(part, 0.0)) / count * 1000, 2)
            for part, used in used_since(before).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="requests of each kind")
    parser.add_argument("--stack-name", default="pacs-validator")
    arguments = parser.parse_args()
    if cpu_seconds() is None:
        raise SystemExit("no local LocalStack to measure: run `make deploy` first")
    outputs = stack_json("outputs", arguments.stack_name)
    dynamodb, s3, lambda_client = client("dynamodb"), client("s3"), client("lambda")
    table, bucket = outputs["StatusTableName"], outputs["UploadsBucketName"]
    key = {"study_id": {"S": "bench-local-requests"}, "item": {"S": "probe"}}
    item = {**key, "status": {"S": "COMPLETED"}, "data": {"S": "x" * 1000}}
    body = b"x" * 2000
    health = HEALTH_EVENT.read_bytes()
    function = outputs["ApiFunctionName"]
    s3.put_object(Bucket=bucket, Key="work/bench-local-requests", Body=body)
    kinds: dict[str, tuple[Callable[[], object], float]] = {
        "health (HTTP floor)": (
            lambda: urllib.request.urlopen(f"{ENDPOINT}/_localstack/health").read(), 0.0),
        "dynamodb GetItem": (lambda: dynamodb.get_item(TableName=table, Key=key), 0.0),
        "dynamodb PutItem 1 KB": (lambda: dynamodb.put_item(TableName=table, Item=item), 0.0),
        "dynamodb UpdateItem ADD": (lambda: dynamodb.update_item(
            TableName=table, Key=key, UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}}), 0.0),
        "s3 GetObject 2 KB": (lambda: s3.get_object(
            Bucket=bucket, Key="work/bench-local-requests")["Body"].read(), 0.0),
        "s3 PutObject 2 KB": (lambda: s3.put_object(
            Bucket=bucket, Key="work/bench-local-requests", Body=body), 0.0),
        "lambda Invoke, synchronous": (
            lambda: lambda_client.invoke(FunctionName=function, Payload=health), 0.0),
        "lambda Invoke, asynchronous": (lambda: lambda_client.invoke(
            FunctionName=function, Payload=health, InvocationType="Event"), SETTLE_SECONDS),
    }
    results = {name: cpu_ms_per_call(call, arguments.count, settle)
               for name, (call, settle) in kinds.items()}
    dynamodb.delete_item(TableName=table, Key=key)
    s3.delete_object(Bucket=bucket, Key="work/bench-local-requests")
    for name, used in results.items():
        print(f"{name:32s} ms of CPU per request: LocalStack {used['localstack']:6.2f}, "
              f"its DynamoDB backend {used.get('dynamodb', 0.0):6.2f}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"local-requests-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps({"count": arguments.count, "ms_per_request": results}, indent=1))
    print(f"results: {path.relative_to(RESULTS.parents[1])}")


if __name__ == "__main__":
    main()
