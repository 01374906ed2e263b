"""The deployed resources on moto, in process, with the three handlers loaded against them:
what the scale and fault benchmarks drive, as the integration tests do (same fixtures)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests-local" / "integration"), str(ROOT / "tests-local")]

from conftest import (  # noqa: E402  (the integration harness: tables, context, events)
    ACCOUNT,
    BUS,
    IDEMPOTENCY_TABLE,
    STATUS_TABLE,
    STORE,
    UPLOADS,
    FakeContext,
    RecordingDispatcher,
    api_event,
    create_tables,
    load_function,
    s3_put_event,
)
from corpus_studies import reidentified_study  # noqa: E402

__all__ = ["ROOT", "STATUS_TABLE", "STORE", "UPLOADS", "FakeContext", "MotoStack", "api_event",
           "bridge_event", "moto_stack", "reidentified_study", "s3_put_event"]

ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench", "UPLOADS_BUCKET": UPLOADS, "STORE_BUCKET": STORE,
    "STATUS_TABLE": STATUS_TABLE, "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
    "EVENT_BUS_NAME": BUS, "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "PacsValidatorBench",
    "POWERTOOLS_SERVICE_NAME": "pacs-validator-bench", "POWERTOOLS_LOG_LEVEL": "ERROR",
    "API_AUTH": "NONE",  # benchmarks measure the pipeline; authentication is tested in the suite
}


@dataclass
class MotoStack:
    harness: boto3.session.Session
    """The client's side and the checks; not the handlers' session."""
    functions: dict[str, ModuleType]
    chunk_events: list[dict[str, Any]] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return self.harness.client(service)

    def worker_for(self, chunk_event: dict[str, Any]) -> ModuleType:
        """The function a chunk event is for (stored: descriptor, rejected: validator)."""
        return self.functions["descriptor" if chunk_event["work"] == "store" else "validator"]


def bridge_event(detail: dict[str, Any], detail_type: str = "validation.success"
                 ) -> dict[str, Any]:
    """An event as EventBridge hands it to a target."""
    return {"version": "0", "id": detail["event_id"], "detail-type": detail_type,
            "source": "pacs-validator", "account": ACCOUNT, "time": "2026-11-29T00:00:00Z",
            "region": "us-east-1", "resources": [], "detail": detail}


@contextlib.contextmanager
def moto_stack(instrument: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
               ) -> Iterator[MotoStack]:
    """Buckets, tables and bus on a fresh moto, and the handlers loaded fresh against them.
    ``instrument`` wraps the handlers' life (their AWS sessions are made inside it)."""
    os.environ.update(ENVIRONMENT)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    harness = boto3.session.Session()
    with mock_aws(), instrument():
        s3 = harness.client("s3")
        for bucket in (UPLOADS, STORE):
            s3.create_bucket(Bucket=bucket)
        create_tables(harness.client("dynamodb"))
        harness.client("events").create_event_bus(Name=BUS)
        stack = MotoStack(harness=harness, functions={
            name: load_function(name) for name in ("api", "validator", "descriptor")})
        for name in ("validator", "descriptor"):
            services = stack.functions[name].pipeline.services
            services.dispatcher = RecordingDispatcher(stack.chunk_events)
        yield stack
