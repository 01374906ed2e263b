"""The status table: one item per study, the single writer of study state.

Item: ``study_id`` (key), ``state``, ``status``, ``manifest`` (declared names), ``instances``
(name -> verdict record, see ``InstanceResult.to_record``), ``findings``, ``timeline``,
``keys``, ``deadline`` and ``expires_at`` (TTL). While a study is still receiving files it
also carries ``open_shard``, the key of a sparse index that the deadline sweep queries.

Every change is one conditional UpdateItem, so two Lambdas handling two files of one study
at the same moment cannot lose each other's verdicts, and only one of them can claim the
study-level checks.
"""

from __future__ import annotations

import time
from decimal import Decimal
from enum import Enum
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

OPEN_INDEX = "open-deadline-index"
OPEN_SHARD = "open"


class State(str, Enum):
    AWAITING_UPLOAD = "AWAITING_UPLOAD"
    RECEIVING = "RECEIVING"
    VALIDATING = "VALIDATING"
    REJECTED = "REJECTED"
    VALID = "VALID"
    STORED = "STORED"
    FAILED = "FAILED"
    INCOMPLETE = "INCOMPLETE"


OPEN_STATES = (State.AWAITING_UPLOAD, State.RECEIVING)
TERMINAL_STATES = (State.REJECTED, State.STORED, State.FAILED, State.INCOMPLETE)


class StudyNotFound(LookupError):
    pass


def _now() -> int:
    return int(time.time())


def _timestamp() -> Decimal:
    """Timeline times in epoch seconds to the millisecond (DynamoDB numbers are Decimals)."""
    return Decimal(str(round(time.time(), 3)))


def plain(value: Any) -> Any:
    """DynamoDB's Decimals back to ints and floats, for JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _conditional_failed(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


class StatusTable:
    def __init__(self, table_name: str, retention_days: int = 30, resource: Any = None) -> None:
        self.table = (resource or boto3.resource("dynamodb")).Table(table_name)
        self.retention_seconds = retention_days * 86400

    def create(self, study_id: str, manifest: list[str], deadline_seconds: int,
               state: State = State.AWAITING_UPLOAD) -> bool:
        """A new study record; False when the id already exists (a redelivered event)."""
        now = _now()
        item: dict[str, Any] = {
            "study_id": study_id,
            "state": state.value,
            "status": None,
            "manifest": manifest,
            "instances": {},
            "findings": [],
            "keys": {},
            "timeline": [{"state": state.value, "at": _timestamp()}],
            "created_at": now,
            "deadline": now + deadline_seconds,
            "open_shard": OPEN_SHARD,
            "expires_at": now + self.retention_seconds,
        }
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr("study_id").not_exists())
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def get(self, study_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"study_id": study_id}, ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def record_instance(self, study_id: str, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store one file's verdict; the whole item after the write.

        Raises StudyNotFound when the study is unknown or no longer receiving files.
        """
        try:
            response = self.table.update_item(
                Key={"study_id": study_id},
                UpdateExpression=(
                    "SET instances.#name = :record, #state = :receiving, "
                    "timeline = list_append(timeline, :entry)"
                ),
                ConditionExpression=(
                    "attribute_exists(study_id) AND #state IN (:awaiting, :receiving)"
                ),
                ExpressionAttributeNames={"#name": name, "#state": "state"},
                ExpressionAttributeValues={
                    ":record": record,
                    ":receiving": State.RECEIVING.value,
                    ":awaiting": State.AWAITING_UPLOAD.value,
                    ":entry": [{"state": State.RECEIVING.value, "at": _timestamp(), "file": name}],
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _conditional_failed(error):
                raise StudyNotFound(study_id) from error
            raise
        attributes: dict[str, Any] = plain(response["Attributes"])
        return attributes

    def transition(
        self,
        study_id: str,
        state: State,
        expected: tuple[State, ...],
        status: int | None = None,
        findings: list[dict[str, Any]] | None = None,
        keys: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> dict[str, Any] | None:
        """Move to ``state`` if the study is in one of ``expected``: the item after the
        change, or None (nothing changed) when it was in another state."""
        entry: dict[str, Any] = {"state": state.value, "at": _timestamp()}
        if reason:
            entry["reason"] = reason
        names = {"#state": "state"}
        values: dict[str, Any] = {":state": state.value, ":entry": [entry]}
        sets = ["#state = :state", "timeline = list_append(timeline, :entry)"]
        for field, value in (("status", status), ("findings", findings), ("keys", keys)):
            if value is not None:
                names[f"#{field}"] = field
                values[f":{field}"] = value
                sets.append(f"#{field} = :{field}")
        expected_names = []
        for index, allowed in enumerate(expected):
            values[f":expected{index}"] = allowed.value
            expected_names.append(f":expected{index}")
        update = "SET " + ", ".join(sets)
        if state not in OPEN_STATES:
            update += " REMOVE open_shard"
        try:
            response = self.table.update_item(
                Key={"study_id": study_id},
                UpdateExpression=update,
                ConditionExpression=f"#state IN ({', '.join(expected_names)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _conditional_failed(error):
                return None
            raise
        item: dict[str, Any] = plain(response["Attributes"])
        return item

    def overdue(self, now: int | None = None) -> list[str]:
        """Ids of studies still receiving files after their deadline."""
        now = now if now is not None else _now()
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "IndexName": OPEN_INDEX,
            "KeyConditionExpression": Key("open_shard").eq(OPEN_SHARD) & Key("deadline").lt(now),
        }
        while True:
            page = self.table.query(**kwargs)
            ids.extend(str(item["study_id"]) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return ids
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def public_view(item: dict[str, Any]) -> dict[str, Any]:
    """The ``GET /status`` body: state, verdict, findings, timeline, keys, per-file verdicts."""
    instances = item.get("instances", {})
    return {
        "study_id": item["study_id"],
        "state": item["state"],
        "status": item.get("status"),
        "findings": item.get("findings", []),
        "timeline": item.get("timeline", []),
        "keys": item.get("keys", {}),
        "manifest": {
            "declared": item.get("manifest", []),
            "received": sorted(instances),
        },
        "files": [
            {"name": name, "status": record["status"], "findings": record["findings"]}
            for name, record in sorted(instances.items())
        ],
    }
