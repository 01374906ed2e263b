"""LocalStack's CPU per request, by kind, on the local (Docker-less) runtime.

LocalStack is one process, and its interpreter lock bounds the whole local pipeline
(bench_e2e.py), so what each request costs it is what sets the pace. This sends one kind of
request at a time, N times in a row from one client, and divides LocalStack's CPU (read from
/proc, as bench_e2e.py does) by N:
- the HTTP floor (``GET /_localstack/health``);
- the DynamoDB and S3 calls a validator makes per file, on scratch items and objects;
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
from bench_e2e import RESULTS, ROOT, localstack_cpu_seconds, stack_json

ENDPOINT = "http://127.0.0.1:4566"
SETTLE_SECONDS = 5.0
"""How long the asynchronous invocations are given to run before LocalStack's CPU is read."""

HEALTH_EVENT = ROOT / "events" / "api-health.json"
"""The API Gateway event of a `GET /health`, as `sam local invoke` uses it."""


def client(service: str) -> Any:
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def cpu_ms_per_call(call: Callable[[], object], count: int, settle: float = 0.0) -> float:
    """LocalStack's CPU per call, in ms, over ``count`` calls (after one warm-up call); an
    idle LocalStack's CPU over ``settle`` seconds of waiting is taken off."""
    call()
    idle = 0.0
    if settle:
        before = localstack_cpu_seconds() or 0.0
        time.sleep(settle)
        idle = (localstack_cpu_seconds() or 0.0) - before
    before = localstack_cpu_seconds() or 0.0
    for _ in range(count):
        call()
    time.sleep(settle)
    used = (localstack_cpu_seconds() or 0.0) - before - idle
    return used / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="requests of each kind")
    parser.add_argument("--stack-name", default="pacs-validator")
    arguments = parser.parse_args()
    if localstack_cpu_seconds() is None:
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
    results = {name: round(cpu_ms_per_call(call, arguments.count, settle), 2)
               for name, (call, settle) in kinds.items()}
    dynamodb.delete_item(TableName=table, Key=key)
    s3.delete_object(Bucket=bucket, Key="work/bench-local-requests")
    for name, value in results.items():
        print(f"{name:32s} {value:6.2f} ms of LocalStack CPU per request")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"local-requests-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps({"count": arguments.count, "ms_per_request": results}, indent=1))
    print(f"results: {path.relative_to(RESULTS.parents[1])}")


if __name__ == "__main__":
    main()
