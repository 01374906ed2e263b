"""What a measured run would cost on AWS: its requests, capacity units, events and Lambda
time, priced at AWS's public list prices. An estimate, not a bill.

The prices are those AWS published for us-east-1 (N. Virginia) in 2025, DynamoDB on-demand
after its 1 November 2024 reduction (halved to the figures below). They were not re-checked
from this offline machine: check them before quoting. Not priced: storage, data transfer,
CloudWatch Logs and metrics, KMS, Secrets Manager, the deadline sweep's schedule, free tiers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

PRICES_AS_OF = "AWS list prices, us-east-1, as published in 2025 (DynamoDB on-demand after " \
               "its 1 Nov 2024 cut); not re-checked from this machine"
S3_PUT_CLASS_PER_1000 = 0.005
"""PUT, COPY, POST, LIST (and the multipart calls), S3 Standard."""
S3_GET_CLASS_PER_1000 = 0.0004
"""GET, HEAD and the other reads, S3 Standard."""
DYNAMODB_WRU_PER_MILLION = 0.625
DYNAMODB_RRU_PER_MILLION = 0.125
EVENTBRIDGE_EVENTS_PER_MILLION = 1.00
"""Custom events published (each entry of up to 64 KB); delivery to targets is not charged."""
LAMBDA_REQUESTS_PER_MILLION = 0.20
LAMBDA_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
LAMBDA_EPHEMERAL_GB_SECOND = 0.0000000309
"""Ephemeral storage configured beyond the 512 MB included, per GB-second."""
INCLUDED_EPHEMERAL_MB = 512
API_GATEWAY_REST_PER_MILLION = 3.50
"""REST APIs, the first 333 million requests a month."""

S3_PUT_CLASS = {"PutObject", "CopyObject", "PostObject", "ListObjectsV2",
                "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
S3_GET_CLASS = {"GetObject", "HeadObject"}


def memory_mb(template: Path) -> dict[str, int]:
    """Each function's MemorySize in ``template`` (its own, else the Globals'), by the name
    the benchmarks give it (``api`` for ``ApiFunction``)."""
    return _per_function(template, lambda settings: settings["MemorySize"])


def extra_ephemeral_mb(template: Path) -> dict[str, int]:
    """Each function's ephemeral storage (``/tmp``) in ``template`` beyond the 512 MB that
    Lambda includes, which is billed whether it is used or not."""
    return _per_function(template, lambda settings: max(
        0, int(settings["EphemeralStorage"]["Size"]) - INCLUDED_EPHEMERAL_MB))


def _per_function(template: Path, setting: Callable[[dict[str, Any]], Any]) -> dict[str, int]:
    document, errors = decode_str(template.read_text())
    if errors or document is None:
        raise ValueError(f"{template} does not parse: {errors}")
    defaults = document["Globals"]["Function"]
    return {name.removesuffix("Function").lower():
            int(setting({**defaults, **spec["Properties"]}))
            for name, spec in document["Resources"].items()
            if spec["Type"] == "AWS::Serverless::Function"}


@dataclass(frozen=True)
class Usage:
    """What a run used: request counts by ``service.Operation`` (the client's uploads
    included as ``s3.PostObject``), DynamoDB units, events, and Lambda calls and seconds by
    function."""

    requests: dict[str, float]
    write_units: float
    read_units: float
    events: float
    calls: dict[str, float]
    seconds: dict[str, float]

    def scaled(self, factor: float) -> Usage:
        return Usage({op: n * factor for op, n in self.requests.items()},
                     self.write_units * factor, self.read_units * factor, self.events * factor,
                     {f: n * factor for f, n in self.calls.items()},
                     {f: s * factor for f, s in self.seconds.items()})


def priced(usage: Usage, memory: dict[str, int], extra_ephemeral: dict[str, int]
           ) -> list[dict[str, Any]]:
    """One row per line of the bill: what, how many, at what price, for how much.
    ``memory`` and ``extra_ephemeral`` are each function's MB of both."""
    def requests(service: str, kinds: set[str]) -> float:
        return sum(n for op, n in usage.requests.items()
                   if op.startswith(f"{service}.") and op.split(".", 1)[1] in kinds)

    rows = [
        ("S3", "PUT, COPY, POST, LIST requests", requests("s3", S3_PUT_CLASS),
         S3_PUT_CLASS_PER_1000 / 1000, "$0.005 per 1,000"),
        ("S3", "GET, HEAD requests", requests("s3", S3_GET_CLASS),
         S3_GET_CLASS_PER_1000 / 1000, "$0.0004 per 1,000"),
        ("DynamoDB", "write request units", usage.write_units,
         DYNAMODB_WRU_PER_MILLION / 1e6, "$0.625 per million"),
        ("DynamoDB", "read request units", usage.read_units,
         DYNAMODB_RRU_PER_MILLION / 1e6, "$0.125 per million"),
        ("EventBridge", "custom events", usage.events,
         EVENTBRIDGE_EVENTS_PER_MILLION / 1e6, "$1.00 per million"),
        ("Lambda", "requests", sum(usage.calls.values()),
         LAMBDA_REQUESTS_PER_MILLION / 1e6, "$0.20 per million"),
        ("Lambda", "GB-seconds, x86_64", gb_seconds(usage, memory),
         LAMBDA_GB_SECOND["x86_64"], "$0.0000166667 per GB-s"),
        ("Lambda", "ephemeral storage over 512 MB, GB-seconds",
         gb_seconds(usage, extra_ephemeral), LAMBDA_EPHEMERAL_GB_SECOND,
         "$0.0000000309 per GB-s"),
        ("API Gateway", "REST requests", usage.calls.get("api", 0.0),
         API_GATEWAY_REST_PER_MILLION / 1e6, "$3.50 per million"),
    ]
    return [{"service": service, "kind": kind, "quantity": quantity, "price": label,
             "cost": quantity * unit} for service, kind, quantity, unit, label in rows]


def gb_seconds(usage: Usage, sizes_mb: dict[str, int]) -> float:
    """Each function's seconds at its size in MB (its memory: Lambda's billed compute)."""
    return sum(seconds * sizes_mb[function] / 1024 for function, seconds in usage.seconds.items())
