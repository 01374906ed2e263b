"""What the handlers' AWS clients did, counted from botocore's event hooks: requests by
function and operation, the DynamoDB capacity units they consumed (estimated from item
sizes), the events they published and the largest event detail.

DynamoDB's units follow its pricing rules, applied to the items as moto holds them: a write
costs 1 WRU per KB (rounded up) of the larger of the item before and after it, twice that in a
transaction; a read costs 1 RRU per 4 KB of what it returns (half for an eventually consistent
read), at least one unit's worth; a write that moves a status item in or out of the sparse
``open-deadline-index``, or changes its key there, also writes the index. Item sizes are
DynamoDB's: attribute names plus values, numbers at about one byte per two digits.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.handlers

DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}
DYNAMODB_READS = {"GetItem", "Query"}
INDEX_KEY = ("open_shard", "deadline")
"""The status table's sparse index (template.yaml: open-deadline-index)."""


def value_bytes(value: dict[str, Any]) -> int:
    """The size DynamoDB counts for one attribute value as the SDK holds it (``{"S": …}``;
    a binary value as bytes)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = data.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_bytes({kind[0]: member}) for member in data)
    if kind == "L":
        return 3 + sum(1 + value_bytes(member) for member in data)
    return 3 + sum(1 + len(name.encode()) + value_bytes(member)  # "M"
                   for name, member in data.items())


def item_bytes(item: dict[str, Any] | None) -> int:
    return sum(len(name.encode()) + value_bytes(value) for name, value in (item or {}).items())


def _kilobytes(size: int) -> int:
    return max(1, math.ceil(size / 1024))


@dataclass
class Meter:
    """Counts, from the moment it is reset, what the handlers' clients asked of AWS.

    ``function`` names the handler running (the harness sets it around each call); ``probe``
    is a DynamoDB client of the harness's own session (not counted) that reads items before
    and after each write, to size it."""

    function: str = "harness"
    probe: Any = None
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    write_units: Counter[str] = field(default_factory=Counter)
    read_units: Counter[str] = field(default_factory=Counter)
    dynamodb_written: int = 0
    dynamodb_read: int = 0
    events_published: int = 0
    probe_seconds: float = 0.0
    """Time spent reading items to size writes: not the handlers' own."""
    largest_event: int = 0
    success_events: list[dict[str, Any]] = field(default_factory=list)
    _key_names: dict[str, list[str]] = field(default_factory=dict)

    def reset(self, probe: Any) -> None:
        self.__init__(probe=probe)  # type: ignore[misc]

    def count(self, operation: str, times: int = 1) -> None:
        """``times`` requests of ``operation`` (``service.Operation``) by the running handler."""
        self.requests[(self.function, operation)] += times

    def before_call(self, model: Any, params: dict[str, Any], context: dict[str, Any],
                    **_: Any) -> None:
        self.count(f"{model.service_model.service_name}.{model.name}")
        if model.service_model.service_name != "dynamodb" or self.probe is None:
            return
        body = json.loads(params["body"] or b"{}")
        if model.name in DYNAMODB_WRITES:
            self.dynamodb_written += len(params["body"])
            context["written"] = [(table, key, self._item(table, key), factor)
                                  for table, key, factor in self._written(model.name, body)]
        elif model.name in DYNAMODB_READS:
            context["consistent"] = bool(body.get("ConsistentRead"))

    def before_parameter_build(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.service_model.service_name == "events" and model.name == "PutEvents":
            self.events_published += len(params["Entries"])
            for entry in params["Entries"]:
                self.largest_event = max(self.largest_event, len(entry["Detail"]))
                if entry["DetailType"] == "validation.success":
                    self.success_events.append(json.loads(entry["Detail"]))

    def after_call(self, http_response: Any, model: Any, context: dict[str, Any],
                   **_: Any) -> None:
        if model.service_model.service_name != "dynamodb" or self.probe is None:
            return
        if model.name in DYNAMODB_READS:
            self.dynamodb_read += len(http_response.content)
            answer = json.loads(http_response.content or b"{}")
            items = answer.get("Items", [answer["Item"]] if "Item" in answer else [])
            units = max(1, math.ceil(sum(map(item_bytes, items)) / 4096))
            self.read_units[model.name] += units * (1 if context.get("consistent") else 0.5)
        for table, key, before, factor in context.get("written", []):
            after = self._item(table, key)
            self.write_units[model.name] += factor * _kilobytes(
                max(item_bytes(before), item_bytes(after)))
            self.write_units[f"{model.name} (index)"] += self._index_writes(before, after)

    def _written(self, operation: str, body: dict[str, Any]
                 ) -> Iterator[tuple[str, dict[str, Any], int]]:
        """The (table, key, unit factor) of each item a write request touches."""
        if operation != "TransactWriteItems":
            yield body["TableName"], self._key(body["TableName"], body), 1
            return
        for action in body["TransactItems"]:
            ((_, part),) = action.items()
            yield part["TableName"], self._key(part["TableName"], part), 2

    def _key(self, table: str, part: dict[str, Any]) -> dict[str, Any]:
        if "Key" in part:
            return dict(part["Key"])
        if table not in self._key_names:
            schema = self.probe.describe_table(TableName=table)["Table"]["KeySchema"]
            self._key_names[table] = [entry["AttributeName"] for entry in schema]
        return {name: part["Item"][name] for name in self._key_names[table]}

    def _item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        started = time.perf_counter()
        item: dict[str, Any] | None = self.probe.get_item(
            TableName=table, Key=key, ConsistentRead=True).get("Item")
        self.probe_seconds += time.perf_counter() - started
        return item

    @staticmethod
    def _index_writes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
        def entry(item: dict[str, Any] | None) -> tuple[Any, ...] | None:
            keys = tuple((item or {}).get(name) for name in INDEX_KEY)
            return keys if all(keys) else None
        old, new = entry(before), entry(after)
        if old == new:
            return 0
        return 2 if old and new else 1  # a changed key: the old entry removed, a new one put

    def by_operation(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for (_, operation), count in self.requests.items():
            totals[operation] += count
        return totals


@contextlib.contextmanager
def watching(meter: Meter) -> Iterator[None]:
    """Hook ``meter`` into every botocore session made meanwhile: the handlers' (the default
    session, and the one Powertools' idempotency layer makes), not the harness's."""
    hooks = [("before-call", meter.before_call),
             ("before-parameter-build", meter.before_parameter_build),
             ("after-call", meter.after_call)]
    botocore.handlers.BUILTIN_HANDLERS.extend(hooks)
    try:
        yield
    finally:
        for hook in hooks:
            botocore.handlers.BUILTIN_HANDLERS.remove(hook)
