"""Cost per instance as a study grows: the three handlers on moto, 1 to 10,000 instances.

For each study size N, a fresh in-process AWS (moto) gets the deployed resources, the API
declares N files, each file is put where the study-wide form sends it and handed to the
validator as its S3 event, and the descriptor receives every validation.success and chunk
event, as EventBridge and Lambda would deliver them. The study is made of real corpus
files re-identified per instance in 4 series (``tests-local/corpus_studies.py``).

Printed per size, from botocore's event hooks on the handlers' own clients (the harness's
uploads, which stand for the client's presigned POSTs, are not counted):
- AWS requests per instance, and of them DynamoDB's;
- DynamoDB bytes written (request bodies of writes) and read (response bodies of reads) per
  instance;
- the largest status-table item (its DynamoDB JSON), event detail and handler answer;
- the longest single invocation, and handler wall time per instance.

Goals: every per-instance figure at 10,000 within 1.2x of its value at 100; the study
STORED at every size; the largest item at most 16 KB.

    .venv/bin/python benchmarks/bench_scale.py                   # 1,10,100,1000,10000: ~15 min
    .venv/bin/python benchmarks/bench_scale.py --sizes 10,100    # quick look

Not part of the test suite. Results go to benchmarks/results/scale-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import botocore.handlers
from moto_stack import (
    ROOT,
    STATUS_TABLE,
    STORE,
    UPLOADS,
    FakeContext,
    MotoStack,
    api_event,
    bridge_event,
    moto_stack,
    reidentified_study,
    s3_put_event,
)

RESULTS = ROOT / "benchmarks" / "results"
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
                   "TransactWriteItems"}
DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
@dataclass
class Meter:
    """What the handlers' AWS clients did, from botocore's event hooks."""

    requests: Counter[str] = field(default_factory=Counter)
    dynamodb_written: int = 0
    dynamodb_read: int = 0
    largest_event: int = 0
    success_events: list[dict[str, Any]] = field(default_factory=list)

    def before_call(self, model: Any, **_: Any) -> None:
        self.requests[f"{model.service_model.service_name}.{model.name}"] += 1

    def before_parameter_build(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.service_model.service_name == "events" and model.name == "PutEvents":
            for entry in params["Entries"]:
                self.largest_event = max(self.largest_event, len(entry["Detail"]))
                if entry["DetailType"] == "validation.success":
                    self.success_events.append(json.loads(entry["Detail"]))

    def before_send(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rpartition(".")[2]
        if operation in DYNAMODB_WRITES and request.body:
            self.dynamodb_written += len(request.body)

    def after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        if model.service_model.service_name == "dynamodb" and model.name in DYNAMODB_READS:
            self.dynamodb_read += len(http_response.content)


@dataclass
class Invocations:
    """Wall time of every handler call by function, and the largest answer."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    largest_answer: int = 0

    def call(self, function: ModuleType, event: dict[str, Any]) -> Any:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metric lines
            answer = function.lambda_handler(event, FakeContext())
        name = function.__name__.removeprefix("pv_function_")
        self.seconds.setdefault(name, []).append(time.perf_counter() - started)
        self.largest_answer = max(self.largest_answer, len(json.dumps(answer, default=str)))
        return answer


@contextlib.contextmanager
def watching(meter: Meter) -> Iterator[None]:
    """Hook ``meter`` into every botocore session made meanwhile: the handlers' (the default
    session, and the one Powertools' idempotency layer makes), not the harness's."""
    hooks = [("before-call", meter.before_call),
             ("before-parameter-build", meter.before_parameter_build),
             ("before-send.dynamodb", meter.before_send), ("after-call", meter.after_call)]
    botocore.handlers.BUILTIN_HANDLERS.extend(hooks)
    try:
        yield
    finally:
        for hook in hooks:
            botocore.handlers.BUILTIN_HANDLERS.remove(hook)


def largest_item(session: boto3.session.Session) -> int:
    client = session.client("dynamodb")
    largest = 0
    for page in client.get_paginator("scan").paginate(TableName=STATUS_TABLE):
        largest = max([largest, *(len(json.dumps(item)) for item in page["Items"])])
    return largest


def run(size: int, meter: Meter) -> dict[str, Any]:
    files = dict(reidentified_study(size, seed=f"bench-{size}"))
    with moto_stack(instrument=lambda: watching(meter)) as stack:
        meter.__init__()  # type: ignore[misc]  # count from here on
        calls = Invocations()
        body = upload(stack, calls, files)
        for detail in meter.success_events:
            calls.call(stack.functions["descriptor"], bridge_event(detail))
        while stack.chunk_events:
            event = stack.chunk_events.pop(0)
            calls.call(stack.worker_for(event), event)
        return measured(stack, calls, meter, body, size)


def upload(stack: MotoStack, calls: Invocations, files: dict[str, bytes]) -> dict[str, Any]:
    """Declare the study, put each file where its form sends it, hand the validator its S3
    event; the POST /upload answer."""
    declared = {"files": [{"name": n, "size": len(d)} for n, d in files.items()]}
    body: dict[str, Any] = json.loads(calls.call(stack.functions["api"], api_event(
        "POST", "/upload", declared))["body"])
    prefix = body["upload"]["key_prefix"]
    s3 = stack.client("s3")
    for index, (name, data) in enumerate(files.items()):
        s3.put_object(Bucket=UPLOADS, Key=prefix + name, Body=data)
        calls.call(stack.functions["validator"],
                   s3_put_event(UPLOADS, prefix + name, f"{index:08X}", len(data)))
    return body


def measured(stack: MotoStack, calls: Invocations, meter: Meter, body: dict[str, Any],
             size: int) -> dict[str, Any]:
    study_id = body["study_id"]
    status_event = api_event("GET", f"/status/{study_id}", path_parameters={"study_id": study_id})
    status = json.loads(calls.call(stack.functions["api"], status_event)["body"])
    requests = sum(meter.requests.values())
    arrivals = calls.seconds["validator"][:size]  # one call per arrival, in order
    tenth = max(size // 10, 1)
    dynamodb = sum(n for op, n in meter.requests.items() if op.startswith("dynamodb."))
    metadata = json.loads(stack.client("s3").get_object(
        Bucket=STORE, Key=status["keys"]["metadata"])["Body"].read()) \
        if status["state"] == "STORED" else {}
    return {
        "instances": size,
        "state": status["state"],
        "metadata_instances": metadata.get("counts", {}).get("instances"),
        "requests_per_instance": requests / size,
        "dynamodb_requests_per_instance": dynamodb / size,
        "dynamodb_bytes_written_per_instance": meter.dynamodb_written / size,
        "dynamodb_bytes_read_per_instance": meter.dynamodb_read / size,
        "largest_item_bytes": largest_item(stack.harness),
        "largest_event_bytes": meter.largest_event,
        "largest_answer_bytes": calls.largest_answer,
        "longest_invocation_s": max(max(times) for times in calls.seconds.values()),
        "handler_ms_per_instance": 1000 * sum(map(sum, calls.seconds.values())) / size,
        "arrival_ms_first_tenth": 1000 * statistics.median(arrivals[:tenth]),
        "arrival_ms_last_tenth": 1000 * statistics.median(arrivals[-tenth:]),
        "seconds_by_function": {name: {"calls": len(times), "total": sum(times),
                                       "longest": max(times)}
                                for name, times in calls.seconds.items()},
        "requests": dict(meter.requests.most_common()),
    }


COLUMNS = (
    ("instances", "instances", "{:d}"), ("state", "state", "{}"),
    ("requests_per_instance", "req/inst", "{:.2f}"),
    ("dynamodb_requests_per_instance", "ddb req/inst", "{:.2f}"),
    ("dynamodb_bytes_written_per_instance", "ddb B written/inst", "{:.0f}"),
    ("dynamodb_bytes_read_per_instance", "ddb B read/inst", "{:.0f}"),
    ("largest_item_bytes", "largest item B", "{:d}"),
    ("largest_event_bytes", "largest event B", "{:d}"),
    ("largest_answer_bytes", "largest answer B", "{:d}"),
    ("longest_invocation_s", "longest call s", "{:.2f}"),
    ("handler_ms_per_instance", "ms/inst", "{:.1f}"),
    ("arrival_ms_first_tenth", "arrival ms, first 10%", "{:.1f}"),
    ("arrival_ms_last_tenth", "arrival ms, last 10%", "{:.1f}"),
)
PER_INSTANCE = ("requests_per_instance", "dynamodb_requests_per_instance",
                "dynamodb_bytes_written_per_instance", "dynamodb_bytes_read_per_instance",
                "handler_ms_per_instance")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,100,1000,10000",
                        help="comma-separated study sizes (instances)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    meter = Meter()

    rows = []
    print("| " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for size in (int(s) for s in args.sizes.split(",")):
        row = run(size, meter)
        rows.append(row)
        print("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |",
              flush=True)
    by_size = {row["instances"]: row for row in rows}
    if 100 in by_size and 10000 in by_size:
        print("\nper-instance figure at 10,000 / at 100 (goal <= 1.2):")
        for key in PER_INSTANCE:
            print(f"  {key}: {by_size[10000][key] / by_size[100][key]:.2f}")
    print(f"\nSTORED at every size: {all(r['state'] == 'STORED' for r in rows)}; "
          f"metadata counts every instance: "
          f"{all(r['metadata_instances'] == r['instances'] for r in rows)}; "
          f"largest item {max(r['largest_item_bytes'] for r in rows)} B (goal <= 16384)")
    for row in rows:
        print(f"requests at {row['instances']}: {row['requests']}")
        print(f"seconds by function at {row['instances']}: {row['seconds_by_function']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
