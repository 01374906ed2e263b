"""How the status table's items look to DynamoDB: their keys, their numbers, and the
assignments of an update, shared by the study items and the file items; and a study item
read as the flow's :class:`~pacs_validator.contract.records.StudyRecord`."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from pacs_validator.contract.records import LastError, StudyCounts, StudyRecord
from pacs_validator.contract.states import State

STUDY_ITEM = "study"
"""The sort key of a study's own item (its files' are ``file#<name>``)."""
DECLARATION_ITEM = "declaration"
"""The sort key of the item binding a client token's study id to its declaration."""


def item_key(study_id: str, item: str) -> dict[str, str]:
    """The primary key of one item of a study (``study`` or ``file#<name>``)."""
    return {"study_id": study_id, "item": item}


def epoch_seconds() -> int:
    return int(time.time())


def timestamp() -> Decimal:
    """Timeline times in epoch seconds to the millisecond (DynamoDB numbers are Decimals)."""
    return Decimal(str(round(time.time(), 3)))


def plain(value: Any) -> Any:
    """DynamoDB's Decimals and sets back to ints, floats and lists, for JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return [plain(v) for v in value]
    return value


def assignments(fields: dict[str, Any]) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """``SET`` clauses for ``fields``, with their attribute names and values as placeholders
    (a field's name may be a reserved word, and its value anything)."""
    clauses = [f"#f{index} = :f{index}" for index in range(len(fields))]
    names = {f"#f{index}": field for index, field in enumerate(fields)}
    values = {f":f{index}": value for index, value in enumerate(fields.values())}
    return clauses, names, values


def study_record(item: dict[str, Any]) -> StudyRecord:
    """A study item (:func:`plain` already) as the flow reads it. Fields a study has not
    reached yet (no verdict, no keys, no error) are absent from its item."""
    counts, error = item.get("counts"), item.get("last_error")
    return StudyRecord(
        study_id=str(item["study_id"]), state=State(item["state"]),
        expected=int(item["expected"]), received=int(item.get("received", 0)),
        manifest=bool(item.get("manifest")), owner=item.get("owner"),
        deadline=item.get("deadline"), largest_declared=item.get("largest_declared"),
        status=item.get("status"),
        outcome=State(item["outcome"]) if item.get("outcome") else None,
        counts=StudyCounts(**counts) if counts else None,
        chunks=int(item.get("chunks", 0)), reports=item.get("reports", {}),
        findings=item.get("findings", []), rules=item.get("rules", []),
        keys=item.get("keys", {}), series=item.get("series"),
        last_error=LastError(int(error["status"]), str(error["reason"])) if error else None,
        failed_from=State(item["failed_from"]) if item.get("failed_from") else None,
        stored_as=item.get("stored_as"),
        stored=item)
