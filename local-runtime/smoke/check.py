"""End-to-end smoke check of the Docker-less local runtime.

Run through check.sh (it picks the interpreter).

up -> deploy -> REST API (both local URL forms) -> S3 upload triggers the worker -> DynamoDB
item -> worker's own EventBridge event comes back -> direct PutEvents -> CloudWatch logs ->
cold/warm invokes -> timeout -> presigned POST with content-length-range -> down (by check.sh).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

HERE = Path(__file__).resolve().parent
STACK = HERE.parent / "stack"
STACK_NAME = "smoke"
ENDPOINT = "http://127.0.0.1:4566"
FIGURES: dict[str, str] = {}


def step(name: str) -> None:
    print(f"--- {name}", flush=True)


def timed(label: str, fn: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = fn()
    FIGURES[label] = f"{time.monotonic() - started:.2f} s"
    return result


def run_stack(*args: str) -> str:
    return subprocess.run([str(STACK), *args], check=True, capture_output=True, text=True).stdout


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_get_post(url: str, payload: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def assert_post_enforces_range(post: dict[str, Any], s3: Any, bucket: str, key: str) -> None:
    """curl the presigned POST (content-length-range 1..100): 50 bytes pass, 1000 are refused."""
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "small.bin", Path(tmp) / "big.bin"
        small.write_bytes(b"x" * 50)
        big.write_bytes(b"x" * 1000)

        def curl(path: Path) -> tuple[str, str]:
            form = [
                arg for name, value in post["fields"].items() for arg in ("-F", f"{name}={value}")
            ]
            done = subprocess.run(
                ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *form, "-F", f"file=@{path}",
                 post["url"]],
                capture_output=True, text=True, check=True,
            )
            body, _, code = done.stdout.rpartition("\n")
            return code, body

        code, body = curl(small)
        assert code in ("200", "201", "204"), (code, body)
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 50
        code, body = curl(big)
        assert code == "400" and "EntityTooLarge" in body, (code, body)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> tuple[Any, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        value = probe()
        if value:
            return value, time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def main() -> None:
    session = boto3.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    client = lambda name, **kw: session.client(name, endpoint_url=ENDPOINT, **kw)  # noqa: E731

    step("up")
    timed("up", lambda: subprocess.run([str(STACK), "up"], check=True))
    step("deploy")
    timed("deploy (sam build + deploy)", lambda: subprocess.run(
        [str(STACK), "deploy", str(HERE / "template.yaml"), STACK_NAME],
        check=True, stdout=subprocess.DEVNULL,
    ))
    outputs = json.loads(run_stack("outputs", STACK_NAME))
    print(json.dumps(outputs, indent=2))
    api_id, bucket, table_name = outputs["ApiId"], outputs["BucketName"], outputs["TableName"]
    table = session.resource("dynamodb", endpoint_url=ENDPOINT).Table(table_name)

    step("REST API")
    url = f"{ENDPOINT}/_aws/execute-api/{api_id}/Prod/health"
    status, body = timed("API GET /health, first call", lambda: http_get(url))
    assert status == 200, (status, body)
    health = json.loads(body)
    assert (
        health["status"] == "ok"
        and health["pydicom"] == "3.0.2"
        and health["python"].startswith("3.12")
    ), health
    status, body = timed("API GET /health, warm", lambda: http_get(url))
    assert status == 200, (status, body)
    status, body = http_get(f"{ENDPOINT}/restapis/{api_id}/Prod/_user_request_/health")
    assert status == 200 and json.loads(body)["status"] == "ok", (status, body)
    status, _ = http_get(f"{ENDPOINT}/_aws/execute-api/{api_id}/Prod/nope")
    assert status in (403, 404), status
    print("health:", health)

    step("S3 ObjectCreated -> worker -> DynamoDB; worker -> EventBridge -> worker")
    s3 = client("s3")
    key = f"incoming/{uuid.uuid4().hex}.dcm"
    s3.put_object(Bucket=bucket, Key=key, Body=b"DICM")
    item, took = wait_for(
        "the S3 item", lambda: table.get_item(Key={"pk": f"s3:{key}"}).get("Item")
    )
    FIGURES["S3 put -> item in DynamoDB"] = f"{took:.2f} s"
    assert item["kind"] == "s3" and int(item["expires_at"]) > time.time(), item
    _, took = wait_for("the event published by the worker",
                       lambda: table.get_item(Key={"pk": f"event:object.seen:{key}"}).get("Item"))
    FIGURES["S3 put -> worker -> PutEvents -> worker -> item"] = f"{took:.2f} s (after the S3 item)"
    # outside the prefix
    s3.put_object(Bucket=bucket, Key=f"other/{uuid.uuid4().hex}.dcm", Body=b"x")

    step("PutEvents on the custom bus -> rule -> worker")
    marker = uuid.uuid4().hex
    sent = time.monotonic()
    response = client("events").put_events(Entries=[{
        "EventBusName": outputs["BusName"], "Source": "smoke.app", "DetailType": "smoke.check",
        "Detail": json.dumps({"key": marker})}])
    assert response["FailedEntryCount"] == 0, response
    wait_for(
        "the direct event",
        lambda: table.get_item(Key={"pk": f"event:smoke.check:{marker}"}).get("Item"),
    )
    FIGURES["PutEvents -> item in DynamoDB"] = f"{time.monotonic() - sent:.2f} s"
    time.sleep(1.0)
    kinds = [i["pk"].split(":")[0] for i in table.scan()["Items"]]
    assert not any(
        i["pk"].startswith("s3:other/") for i in table.scan()["Items"]
    ), "prefix filter ignored"
    print("items by kind:", {k: kinds.count(k) for k in set(kinds)})

    step("CloudWatch Logs")
    logs = client("logs")
    group = client("lambda").get_function_configuration(
        FunctionName=outputs["WorkerFunctionName"])["LoggingConfig"]["LogGroup"]

    def worker_log_text() -> str:
        return "".join(e["message"] for e in logs.filter_log_events(logGroupName=group)["events"])

    text, _ = wait_for(
        "worker logs",
        lambda: (t := worker_log_text()) and "worker stored" in t and "REPORT" in t and t,
    )
    assert (
        "START RequestId" in text and "END RequestId" in text and '"message":"stored"' in text
    ), text[:2000]
    print(f"{len(text.splitlines())} log lines in {group}")

    step("invoke timings and timeout")
    lam = client("lambda", config=Config(read_timeout=120, retries={"max_attempts": 0}))
    resources = client("cloudformation").describe_stack_resources(StackName=STACK_NAME)[
        "StackResources"
    ]
    slow = next(
        r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == "SlowFunction"
    )

    def invoke(payload: dict[str, Any]) -> dict[str, Any]:
        return lam.invoke(FunctionName=slow, Payload=json.dumps(payload).encode(), LogType="Tail")

    result = timed(
        "invoke, cold (new process; layer with powertools+pydicom)", lambda: invoke({"sleep": 0})
    )
    assert "FunctionError" not in result, result
    warm = []
    for _ in range(5):
        started = time.monotonic()
        assert "FunctionError" not in invoke({"sleep": 0})
        warm.append(time.monotonic() - started)
    FIGURES["invoke, warm (boto3 round trip, median of 5)"] = f"{sorted(warm)[2] * 1000:.0f} ms"
    result = timed("invoke that times out (Timeout: 1)", lambda: invoke({"sleep": 3}))
    error = json.loads(result["Payload"].read())
    assert result.get("FunctionError") and error["errorType"] == "Sandbox.Timedout", (result, error)
    result = timed("invoke after a timeout (respawned process)", lambda: invoke({"sleep": 0}))
    assert "FunctionError" not in result, result

    step("idempotency (Powertools on moto DynamoDB): the same S3 event twice")
    worker = outputs["WorkerFunctionName"]
    event = json.loads((HERE / "events" / "s3-put.json").read_text())
    event["Records"][0]["s3"]["object"]["key"] = f"incoming/{uuid.uuid4().hex}.dcm"
    answers = [
        lam.invoke(FunctionName=worker, Payload=json.dumps(event).encode()) for _ in range(2)
    ]
    assert all("FunctionError" not in a for a in answers), [
        json.loads(a["Payload"].read()) for a in answers
    ]
    bodies = [json.loads(a["Payload"].read()) for a in answers]
    # the second call returned the stored result; no second put_item
    assert bodies[0] == bodies[1], bodies

    step("presigned POST with content-length-range (made by the test, then by a handler)")
    s3_path = client("s3", config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
    from_test = s3_path.generate_presigned_post(
        bucket, "uploads/presigned.bin",
        Conditions=[["content-length-range", 1, 100]], ExpiresIn=300,
    )
    status, body = http_get_post(f"{ENDPOINT}/_aws/execute-api/{api_id}/Prod/presign",
                                 {"name": "from-handler.bin", "max_bytes": 100})
    assert status == 200, (status, body)
    from_handler = json.loads(body)
    for post, key in (
        (from_test, "uploads/presigned.bin"),
        (from_handler, "incoming/from-handler.bin"),
    ):
        assert post["url"].startswith(f"{ENDPOINT}/{bucket}"), post["url"]
        assert_post_enforces_range(post, s3, bucket, key)
    print("presigned POST: 50 bytes accepted, 1000 bytes rejected with 400 EntityTooLarge (both)")

    pid = (HERE.parent.parent / ".local" / "localstack.pid").read_text().strip()
    rss = subprocess.run(
        ["ps", "-o", "rss=", "-p", pid], capture_output=True, text=True
    ).stdout.strip()
    if rss:
        FIGURES["LocalStack RSS after the run"] = f"{int(rss) // 1024} MB"
    print("\nFIGURES")
    for label, value in FIGURES.items():
        print(f"  {label}: {value}")
    print("SMOKE CHECK PASSED")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"SMOKE CHECK FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
