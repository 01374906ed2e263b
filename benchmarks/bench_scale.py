"""Cost per instance as a study grows: the three handlers on moto, 1 to 10,000 instances.

For each study size N, a fresh in-process AWS (moto) gets the deployed resources, the API
declares N files, each file is put where its form sends it (the study's prefix and its name)
and handed to the validator as its S3 event, the descriptor receives every
validation.success and chunk event, as EventBridge and Lambda would deliver them, and the
status is asked for once. The study is made of real corpus files re-identified per instance
in 4 series (``tests-local/corpus_studies.py``).

Printed per size, from botocore's event hooks on the handlers' own clients
(``benchmarks/aws_meter.py``; the harness's uploads, which stand for the client's presigned
POSTs, are not counted as requests):
- AWS requests per instance, and of them DynamoDB's; every request by operation and
  function (the chunk events the harness records in place of Lambda's asynchronous
  invocations count as ``lambda.Invoke``);
- DynamoDB bytes written (request bodies of writes) and read (response bodies of reads),
  and write and read request units (estimated from item sizes), per instance;
- the largest status-table item (its DynamoDB JSON), event detail and handler answer;
- the longest single invocation, and handler wall time per instance.

Then a cost estimate per 10,000 instances, from the largest size run (scaled linearly when
it is not 10,000): requests by kind, DynamoDB units, events, Lambda requests and GB-seconds
at each function's MemorySize in template.yaml (the handlers' wall time on moto standing
for their duration on AWS), priced as ``benchmarks/aws_prices.py`` says.

Goals: every per-instance figure at 10,000 within 1.2x of its value at 100; the study
STORED at every size; the largest item at most 16 KB; at most 8 requests per instance and
20 for a one-file study (issue 17).

    .venv/bin/python benchmarks/bench_scale.py                   # 1,10,100,1000,10000: ~40 min
    .venv/bin/python benchmarks/bench_scale.py --sizes 1,2000    # the issue's two figures

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
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
from aws_meter import Meter, item_bytes, watching
from aws_prices import PRICES_AS_OF, Usage, extra_ephemeral_mb, gb_seconds, memory_mb, priced
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

from pacs_validator.contract.keys import incoming_prefix

RESULTS = ROOT / "benchmarks" / "results"
FUNCTIONS = ("api", "validator", "descriptor")


@dataclass
class Invocations:
    """Wall time of every handler call by function (less the meter's own reads), and the
    largest answer. Each call is metered as its function's; the chunk events a call hands
    out count as the Lambda ``Invoke`` requests that deliver them on AWS (the harness
    records them instead)."""

    meter: Meter
    chunk_events: list[dict[str, Any]]
    seconds: dict[str, list[float]] = field(default_factory=dict)
    largest_answer: int = 0

    def call(self, function: ModuleType, event: dict[str, Any]) -> Any:
        name = function.__name__.removeprefix("pv_function_")
        self.meter.function = name
        dispatched = len(self.chunk_events)
        probed = self.meter.probe_seconds
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metric lines
            answer = function.lambda_handler(event, FakeContext())
        self.seconds.setdefault(name, []).append(
            time.perf_counter() - started - (self.meter.probe_seconds - probed))
        if len(self.chunk_events) > dispatched:
            self.meter.count("lambda.Invoke", len(self.chunk_events) - dispatched)
        self.meter.function = "harness"
        self.largest_answer = max(self.largest_answer, len(json.dumps(answer, default=str)))
        return answer


def largest_item(session: boto3.session.Session) -> int:
    client = session.client("dynamodb")
    largest = 0
    for page in client.get_paginator("scan").paginate(TableName=STATUS_TABLE):
        largest = max([largest, *map(item_bytes, page["Items"])])
    return largest


def run(size: int, meter: Meter) -> dict[str, Any]:
    files = dict(reidentified_study(size, seed=f"bench-{size}"))
    with moto_stack(instrument=lambda: watching(meter)) as stack:
        meter.reset(probe=stack.client("dynamodb"))  # count from here on
        calls = Invocations(meter, stack.chunk_events)
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
    prefix = incoming_prefix(body["study_id"])
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
    by_operation = meter.by_operation()
    requests = sum(by_operation.values())
    arrivals = calls.seconds["validator"][:size]  # one call per arrival, in order
    tenth = max(size // 10, 1)
    dynamodb = sum(n for op, n in by_operation.items() if op.startswith("dynamodb."))
    metadata = json.loads(stack.client("s3").get_object(
        Bucket=STORE, Key=status["keys"]["metadata"])["Body"].read()) \
        if status["state"] == "STORED" else {}
    return {
        "instances": size,
        "state": status["state"],
        "metadata_instances": metadata.get("counts", {}).get("instances"),
        "requests_total": requests,
        "requests_per_instance": requests / size,
        "dynamodb_requests_per_instance": dynamodb / size,
        "dynamodb_bytes_written_per_instance": meter.dynamodb_written / size,
        "dynamodb_bytes_read_per_instance": meter.dynamodb_read / size,
        "write_units_per_instance": sum(meter.write_units.values()) / size,
        "read_units_per_instance": sum(meter.read_units.values()) / size,
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
        "requests": dict(by_operation.most_common()),
        "requests_by_function": {f"{function} {op}": n for (function, op), n
                                 in sorted(meter.requests.items())},
        "write_units": dict(meter.write_units),
        "read_units": dict(meter.read_units),
        "events_published": meter.events_published,
    }


def usage_of(row: dict[str, Any]) -> Usage:
    """What the run of ``row`` used, with the client's presigned POST of each file."""
    return Usage(requests={**row["requests"], "s3.PostObject": row["instances"]},
                 write_units=sum(row["write_units"].values()),
                 read_units=sum(row["read_units"].values()),
                 events=row["events_published"],
                 calls={f: t["calls"] for f, t in row["seconds_by_function"].items()},
                 seconds={f: t["total"] for f, t in row["seconds_by_function"].items()})


def print_operations(row: dict[str, Any]) -> None:
    """Every request of the run by operation and function, and per instance."""
    size = row["instances"]
    by_function: dict[str, dict[str, int]] = {}
    for label, count in row["requests_by_function"].items():
        function, operation = label.split(" ", 1)
        by_function.setdefault(operation, {})[function] = count
    print(f"\nrequests at {size} instance(s), by operation and function:")
    print("| operation | " + " | ".join(FUNCTIONS) + " | total | per instance |")
    print("|---|" + "---:|" * (len(FUNCTIONS) + 2))
    for operation, total in row["requests"].items():
        counts = by_function[operation]
        print(f"| {operation} | " + " | ".join(str(counts.get(f, "")) for f in FUNCTIONS)
              + f" | {total} | {total / size:.3f} |")
    print("| **all** | " + " | ".join(
        str(sum(c.get(f, 0) for c in by_function.values())) for f in FUNCTIONS)
        + f" | {row['requests_total']} | {row['requests_per_instance']:.3f} |")
    units = ", ".join(f"{op} {n:g}" for op, n in sorted(row["write_units"].items()) if n)
    print(f"DynamoDB WRU: {units}; RRU: " + ", ".join(
        f"{op} {n:g}" for op, n in sorted(row["read_units"].items())))


def print_cost(row: dict[str, Any]) -> None:
    """The estimate per 10,000 instances, from ``row`` scaled linearly."""
    memory = memory_mb(ROOT / "template.yaml")
    factor = 10_000 / row["instances"]
    usage = usage_of(row).scaled(factor)
    print(f"\nestimated cost per 10,000 instances (from the {row['instances']}-instance run"
          f"{'' if factor == 1 else f', x{factor:g}'}; {PRICES_AS_OF}; Lambda at "
          + ", ".join(f"{f} {mb} MB" for f, mb in sorted(memory.items()))
          + ", the handlers' wall time on moto standing for their duration):")
    print("| service | what | per 10,000 instances | price | cost |")
    print("|---|---|---:|---|---:|")
    rows = priced(usage, memory, extra_ephemeral_mb(ROOT / "template.yaml"))
    for line in rows:
        print(f"| {line['service']} | {line['kind']} | {line['quantity']:,.1f} | "
              f"{line['price']} | ${line['cost']:.4f} |")
    print(f"| **total** | | | | **${sum(line['cost'] for line in rows):.4f}** |")
    print(f"(GB-seconds {gb_seconds(usage, memory):,.1f}; S3 POSTs are the client's uploads)")


COLUMNS = (
    ("instances", "instances", "{:d}"), ("state", "state", "{}"),
    ("requests_per_instance", "req/inst", "{:.2f}"),
    ("dynamodb_requests_per_instance", "ddb req/inst", "{:.2f}"),
    ("write_units_per_instance", "WRU/inst", "{:.2f}"),
    ("read_units_per_instance", "RRU/inst", "{:.2f}"),
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
                "write_units_per_instance", "read_units_per_instance",
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
        print_operations(row)
        print(f"seconds by function at {row['instances']}: {row['seconds_by_function']}")
    print_cost(max(rows, key=lambda r: r["instances"]))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
