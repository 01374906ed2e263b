"""How the status table's items look to DynamoDB: their keys, their numbers, and the
assignments of an update, shared by the study items and the file items."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any


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
