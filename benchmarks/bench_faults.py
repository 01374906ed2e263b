"""Faults lose nothing: 1,000 studies through the handlers on moto while AWS calls fail.

Each study (1-3 real corpus files re-identified, some with a truncated file so they are
rejected) is declared, uploaded and delivered as Lambda would: every event (S3 upload,
validation.success, chunk) is tried up to 3 times, then goes to a dead-letter list. Faults are
injected with botocore hooks on the handlers' own clients, each kind on a share of its calls:
S3 CopyObject and GetObject errors, DynamoDB throttling, an EventBridge PutEvents partial
failure (FailedEntryCount > 0, which boto3 does not raise), and a handler timeout (an
exception at a random AWS call). Then faults stop, the dead letters are redriven, and the
deadline sweep runs once past every deadline.

Printed: injected faults by kind, dead letters, terminal states after delivery, after redrive
and after the sweep, lost originals (goal 0), studies stored twice or both stored and
rejected (goal 0), and studies left open (goal 0).

    .venv/bin/python benchmarks/bench_faults.py                 # 1,000 studies: ~5 min
    .venv/bin/python benchmarks/bench_faults.py --studies 100 --rate 0.05

Not part of the test suite. Results go to benchmarks/results/faults-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.handlers
from botocore.exceptions import ClientError
from moto_stack import (
    ROOT,
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
from pydicom.data import get_testdata_file

from pacs_validator.contract.invocations import REDRIVE, is_sweep_payload
from pacs_validator.contract.keys import incoming_prefix

RESULTS = ROOT / "benchmarks" / "results"
ATTEMPTS = 3
"""Lambda's first try and its two retries."""
TRUNCATED = Path(get_testdata_file("MR_truncated.dcm")).read_bytes()


class RetryContext(FakeContext):
    """A Lambda context whose try has no time left when it fails: what the idempotency layer
    sees on AWS, where a retry comes minutes after a failed try (here, at once)."""

    def get_remaining_time_in_millis(self) -> int:
        return 1


class InjectedTimeout(Exception):
    """Stands for the handler running out of time at this point."""


@dataclass
class Injector:
    """Fails a share of the handlers' AWS calls, by kind; counts what it did."""

    rate: float
    rng: random.Random
    active: bool = False
    injected: Counter[str] = field(default_factory=Counter)
    published: list[dict[str, Any]] = field(default_factory=list)

    def _hit(self, kind: str) -> bool:
        if self.active and self.rng.random() < self.rate:
            self.injected[kind] += 1
            return True
        return False

    def before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        service, operation = model.service_model.service_name, model.name
        if self._hit("timeout"):
            raise InjectedTimeout(operation)
        if service == "s3" and operation in ("CopyObject", "GetObject") and self._hit(
                f"s3.{operation}"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}},
                              operation)
        if service == "dynamodb" and operation in ("UpdateItem", "PutItem", "Query") and \
                self._hit("dynamodb.throttling"):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "injected"}}, operation)
        if service == "events" and operation == "PutEvents":
            entries = json.loads(params["body"])["Entries"]  # params: the request as sent
            if self._hit("events.partial-failure"):
                return _Refused(), {"FailedEntryCount": 1, "Entries": [
                    {"ErrorCode": "InternalFailure"} for _ in entries]}
            self.published.extend(json.loads(e["Detail"]) | {"detail-type": e["DetailType"]}
                                  for e in entries)
        return None


class _Refused:
    """The HTTP side of a PutEvents answer that refused its entries (a 200)."""

    status_code = 200
    headers: dict[str, str] = {}  # noqa: RUF012


@contextlib.contextmanager
def injecting(injector: Injector) -> Iterator[None]:
    hook = ("before-call", injector.before_call)
    botocore.handlers.BUILTIN_HANDLERS.append(hook)
    try:
        yield
    finally:
        botocore.handlers.BUILTIN_HANDLERS.remove(hook)


@dataclass
class Delivery:
    """Events delivered as Lambda would: a few tries, then the dead-letter list."""

    stack: MotoStack
    injector: Injector
    dead: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    seen_successes: set[str] = field(default_factory=set)

    def deliver(self, function: str, event: dict[str, Any]) -> None:
        # A batch of overdue studies keeps no idempotency record, and with no time left it
        # would hand its studies out again for ever.
        context = FakeContext() if is_sweep_payload(event) else RetryContext()
        for _attempt in range(ATTEMPTS):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    self.stack.functions[function].lambda_handler(event, context)
                return
            except Exception:  # noqa: BLE001  (any failure is retried, as Lambda does)
                continue
        self.dead.append((function, event))

    def drain(self) -> None:
        """Deliver every validation.success and chunk event not yet delivered."""
        while True:
            new = [e for e in self.injector.published if e["detail-type"] == "validation.success"
                   and e["event_id"] not in self.seen_successes]
            if not new and not self.stack.chunk_events:
                return
            for detail in new:
                self.seen_successes.add(detail["event_id"])
                self.deliver("descriptor", bridge_event(detail))
            while self.stack.chunk_events:
                event = self.stack.chunk_events.pop(0)
                self.deliver("descriptor" if event["work"] == "store" else "validator", event)


def states(stack: MotoStack, study_ids: list[str]) -> Counter[str]:
    api = stack.functions["api"]
    found: Counter[str] = Counter()
    for study_id in study_ids:
        event = api_event("GET", f"/status/{study_id}", path_parameters={"study_id": study_id})
        event["queryStringParameters"] = {"limit": "1"}
        found[json.loads(api.lambda_handler(event, FakeContext())["body"])["state"]] += 1
    return found


def keys(stack: MotoStack, bucket: str, prefix: str) -> list[str]:
    pages = stack.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                        Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.02,
                        help="share of the calls of each kind that fail (default 0.02)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rng = random.Random(args.seed)
    injector = Injector(rate=args.rate, rng=rng)
    started = time.perf_counter()
    with moto_stack(instrument=lambda: injecting(injector)) as stack:
        delivery = Delivery(stack, injector)
        uploads: dict[str, dict[str, bytes]] = {}
        for number in range(args.studies):
            files = dict(reidentified_study(rng.randint(1, 3), seed=f"faults-{number}"))
            if number % 10 == 9:
                files["truncated.dcm"] = TRUNCATED
            declared = {"files": [{"name": n, "size": len(d)} for n, d in files.items()]}
            body = json.loads(stack.functions["api"].lambda_handler(
                api_event("POST", "/upload", declared), FakeContext())["body"])
            uploads[body["study_id"]] = files
            injector.active = True
            for index, (name, data) in enumerate(files.items()):
                key = incoming_prefix(body["study_id"]) + name
                stack.client("s3").put_object(Bucket=UPLOADS, Key=key, Body=data)
                delivery.deliver("validator", s3_put_event(UPLOADS, key, f"{index:04X}"))
            delivery.drain()
            injector.active = False
        study_ids = list(uploads)
        after_delivery = states(stack, study_ids)
        dead_letters = len(delivery.dead)
        redriven, delivery.dead = delivery.dead, []
        for function, event in redriven:
            delivery.deliver(function, {**event, REDRIVE: True})
        delivery.drain()
        after_redrive = states(stack, study_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            stack.functions["validator"].pipeline.sweep(now=int(time.time()) + 10 * 86400)
        delivery.drain()
        final = states(stack, study_ids)
        lost = sum(1 for study_id, files in uploads.items() for name in files
                   if f"incoming/{study_id}/{name}" not in set(keys(stack, UPLOADS,
                                                                    f"incoming/{study_id}/")))
        doubled = sum(1 for study_id in study_ids
                      if keys(stack, STORE, f"studies/{study_id}/")
                      and keys(stack, STORE, f"rejected/{study_id}/"))
        overfull = sum(1 for study_id, files in uploads.items()
                       if len(keys(stack, STORE, f"studies/{study_id}/instances/")) > len(files))
    open_left = sum(n for state, n in final.items()
                    if state not in ("STORED", "REJECTED", "FAILED", "INCOMPLETE"))
    result = {
        "studies": args.studies, "rate": args.rate, "seed": args.seed,
        "injected": dict(injector.injected), "dead_letters": dead_letters,
        "after_delivery": dict(after_delivery), "after_redrive": dict(after_redrive),
        "final": dict(final), "lost_originals": lost, "stored_and_rejected": doubled,
        "stored_twice": overfull, "left_open": open_left,
        "seconds": round(time.perf_counter() - started, 1),
    }
    for name, value in result.items():
        print(f"{name:20} {value}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"faults-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out.relative_to(ROOT)}")
    return 0 if lost == doubled == overfull == open_left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
