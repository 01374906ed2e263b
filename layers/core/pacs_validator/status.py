"""The status table: one small item per study plus one item per file, under the study's key.

The study item (sort key ``study``) holds the state, the verdict, counters and a timeline of
state changes; it never grows with the number of files. Each file's verdict is its own item
(sort key ``file#<name>``), so a study of 20,000 files is 20,001 small items and every write
costs the same whatever the study size.

Arrival of a file writes its item and counts it on the study item if the study is still
receiving (see :meth:`StatusTable.record_file`); a redelivered event or a re-upload of a
name finds the file counted and counts nothing, and only the caller whose claim moves the
study from RECEIVING to VALIDATING runs the study-level checks.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

STUDY_ITEM = "study"
FILE_PREFIX = "file#"
OPEN_INDEX = "open-deadline-index"
OPEN_SHARD = "open"
MAX_FILE_FINDINGS = 40
"""Findings kept per file record (errors first); the rest are counted in ``findings_omitted``.
Keeps every file item far below DynamoDB's 400 KB item limit."""
STATUS_PAGE_BYTES = 200_000
"""A page of ``GET /status`` stops adding files at this many bytes (API responses ≤ 256 KB)."""


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
    """The study does not exist, or no longer receives files."""


class PageTokenError(ValueError):
    """A ``next`` token that this table did not hand out."""


@dataclass(frozen=True)
class Arrival:
    """A file recorded on its study: whether it was counted now or is the same upload seen
    again (a retried event), and the study's counters after."""

    new: bool
    received: int
    expected: int
    repeated: bool = False

    @property
    def complete(self) -> bool:
        return self.received >= self.expected


@dataclass(frozen=True)
class FilePage:
    """One page of a study's file records, and where the next one starts (or None)."""

    records: list[dict[str, Any]]
    next_token: str | None


def _now() -> int:
    return int(time.time())


def _timestamp() -> Decimal:
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


def _conditional_failed(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


def file_item_key(name: str) -> str:
    return f"{FILE_PREFIX}{name}"


def capped_record(record: dict[str, Any]) -> dict[str, Any]:
    """A file record with at most ``MAX_FILE_FINDINGS`` findings, errors kept first."""
    findings = sorted(record["findings"], key=lambda f: f["severity"] != "error")
    omitted = max(len(findings) - MAX_FILE_FINDINGS, 0)
    return {**record, "findings": findings[:MAX_FILE_FINDINGS], "findings_omitted": omitted}


def encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        name = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise PageTokenError("next is not a page token of this study") from error
    if not name or len(name) > 256:
        raise PageTokenError("next is not a page token of this study")
    return name


class StatusTable:
    """The single writer of study state.

    Every unfinished study is on the sparse ``open-deadline-index`` (``open_shard``) with the
    time by which it must move on (``deadline``): the upload deadline while it receives files,
    then ``processing_deadline_seconds`` after each later change of state. The sweep finds
    the studies past theirs; a finished study leaves the index.
    """

    def __init__(self, table_name: str, retention_days: int = 30, resource: Any = None,
                 processing_deadline_seconds: int = 7200) -> None:
        self.table = (resource or boto3.resource("dynamodb")).Table(table_name)
        self.retention_seconds = retention_days * 86400
        self.processing_deadline_seconds = processing_deadline_seconds

    def _key(self, study_id: str, item: str = STUDY_ITEM) -> dict[str, str]:
        return {"study_id": study_id, "item": item}

    def create(self, study_id: str, expected: int, deadline_seconds: int,
               manifest: bool = True) -> bool:
        """A new study expecting ``expected`` files; False when the id already exists
        (a redelivered event). ``manifest`` says whether declared names are stored."""
        now = _now()
        item: dict[str, Any] = {
            **self._key(study_id),
            "state": State.AWAITING_UPLOAD.value,
            "status": None,
            "expected": expected,
            "received": 0,
            "manifest": manifest,
            "findings": [],
            "keys": {},
            "counts": {},
            "timeline": [{"state": State.AWAITING_UPLOAD.value, "at": _timestamp()}],
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
        """The study item (small whatever the study size), read consistently."""
        item = self.table.get_item(Key=self._key(study_id), ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def record_file(self, study_id: str, name: str, record: dict[str, Any]) -> Arrival:
        """Store one file's verdict and count it once per name; a name seen before replaces
        its verdict and is not counted again. ``record["key_version"]`` tells a retried
        event (the same upload) from another upload of the name.

        Three small writes, not a transaction (a transaction would cost twice the capacity,
        and the local DynamoDB copies the whole table for each one): the file item, then the
        count on the study item, then ``counted`` on the file item. A retry after a failure
        between the last two counts the file twice; :meth:`Pipeline.judge_study` notices
        that from the file items and waits for the rest. Nothing can count a file never.

        Raises StudyNotFound when the study is unknown or no longer receiving files.
        """
        fields = {**capped_record(record), "expires_at": _now() + self.retention_seconds}
        names = {f"#f{index}": field for index, field in enumerate(fields)}
        previous = self.table.update_item(
            Key=self._key(study_id, file_item_key(name)),
            UpdateExpression="SET " + ", ".join(f"#f{index} = :f{index}"
                                                for index in range(len(fields))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":f{index}": value
                                       for index, value in enumerate(fields.values())},
            ReturnValues="ALL_OLD",
        ).get("Attributes", {})
        if previous.get("counted"):
            study = self.get(study_id)
            repeated = previous.get("key_version") == record.get("key_version")
            if study is None or not (repeated or study["state"] in {s.value
                                                                    for s in OPEN_STATES}):
                raise StudyNotFound(study_id)  # another upload of the name, too late
            return Arrival(new=False, received=int(study["received"]),
                           expected=int(study["expected"]), repeated=repeated)
        try:
            study = plain(self.table.update_item(
                Key=self._key(study_id),
                UpdateExpression=("SET #state = :receiving, "
                                  "receiving_at = if_not_exists(receiving_at, :now) "
                                  "ADD received :one"),
                ConditionExpression="#state IN (:awaiting, :receiving)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":receiving": State.RECEIVING.value, ":awaiting": State.AWAITING_UPLOAD.value,
                    ":now": _timestamp(), ":one": 1},
                ReturnValues="ALL_NEW",
            )["Attributes"])
        except ClientError as error:
            if _conditional_failed(error):
                raise StudyNotFound(study_id) from error
            raise
        self._set_file(study_id, name, "counted")
        return Arrival(new=True, received=int(study["received"]),
                       expected=int(study["expected"]))

    def mark_late(self, study_id: str, name: str) -> None:
        """Note on a file's record that it arrived after the study stopped receiving."""
        self._set_file(study_id, name, "late")

    def forget_file(self, study_id: str, name: str) -> None:
        """Remove a file record written under a study that does not exist."""
        self.table.delete_item(Key=self._key(study_id, file_item_key(name)))

    def _set_file(self, study_id: str, name: str, flag: str) -> None:
        self.table.update_item(Key=self._key(study_id, file_item_key(name)),
                               UpdateExpression="SET #flag = :true",
                               ExpressionAttributeNames={"#flag": flag},
                               ExpressionAttributeValues={":true": True})

    def files(self, study_id: str) -> Iterator[dict[str, Any]]:
        """Every file record of the study in name order, read consistently page by page."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("study_id").eq(study_id)
            & Key("item").begins_with(FILE_PREFIX),
            "ConsistentRead": True,
        }
        while True:
            page = self.table.query(**kwargs)
            yield from (plain(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def file_page(self, study_id: str, limit: int, after: str | None = None) -> FilePage:
        """Up to ``limit`` file records after the file named ``after``, and no more than
        ``STATUS_PAGE_BYTES`` of them, with the token of the next page."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("study_id").eq(study_id)
            & Key("item").begins_with(FILE_PREFIX),
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = self._key(study_id, file_item_key(after))
        page = self.table.query(**kwargs)
        records: list[dict[str, Any]] = []
        size = 0
        for item in page["Items"]:
            record = plain(item)
            size += len(json.dumps(record, default=str))
            if records and size > STATUS_PAGE_BYTES:
                return FilePage(records, encode_token(records[-1]["name"]))
            records.append(record)
        more = "LastEvaluatedKey" in page and records
        return FilePage(records, encode_token(records[-1]["name"]) if more else None)

    def transition(
        self,
        study_id: str,
        state: State,
        expected: tuple[State, ...],
        reason: str | None = None,
        overdue_at: int | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """Move to ``state`` if the study is in one of ``expected`` (and, with
        ``overdue_at``, still past its deadline then), setting ``fields`` (status, findings,
        keys, counts, ...): the item after the change, or None (nothing changed) when it was
        in another state or has moved on."""
        entry: dict[str, Any] = {"state": state.value, "at": _timestamp()}
        if reason:
            entry["reason"] = reason
        if state not in OPEN_STATES and state not in TERMINAL_STATES:
            fields.update(open_shard=OPEN_SHARD,
                          deadline=_now() + self.processing_deadline_seconds)
        return self._update(study_id, expected, {"state": state.value, **fields},
                            append_entry=entry, leave_open_index=state in TERMINAL_STATES,
                            overdue_at=overdue_at)

    def note_failure(self, study_id: str, status: int, reason: str) -> None:
        """Keep the last error of a study whose event will be retried; its state stays."""
        try:
            self.table.update_item(
                Key=self._key(study_id), UpdateExpression="SET last_error = :error",
                ConditionExpression=Attr("study_id").exists(),
                ExpressionAttributeValues={":error": {"status": status, "reason": reason,
                                                      "at": _timestamp()}})
        except ClientError as error:
            if not _conditional_failed(error):
                raise

    def settle(self, study_id: str, state: State, **fields: Any) -> dict[str, Any] | None:
        """Set ``fields`` on a study that is in ``state``, leaving its state as it is."""
        return self._update(study_id, (state,), fields)

    def _update(
        self,
        study_id: str,
        expected: tuple[State, ...],
        fields: dict[str, Any],
        append_entry: dict[str, Any] | None = None,
        leave_open_index: bool = False,
        overdue_at: int | None = None,
    ) -> dict[str, Any] | None:
        names = {"#state": "state"}
        values: dict[str, Any] = {}
        condition = ""
        if overdue_at is not None:  # a sweep acts only on what is still late when it acts
            values[":overdue_at"] = overdue_at
            condition = " AND deadline < :overdue_at"
        sets = []
        for index, (field, value) in enumerate(fields.items()):
            names[f"#f{index}"] = field
            values[f":f{index}"] = value
            sets.append(f"#f{index} = :f{index}")
        if append_entry is not None:
            values[":entry"] = [append_entry]
            sets.append("timeline = list_append(timeline, :entry)")
        expected_names = []
        for index, allowed in enumerate(expected):
            values[f":expected{index}"] = allowed.value
            expected_names.append(f":expected{index}")
        update = "SET " + ", ".join(sets)
        if leave_open_index:
            update += " REMOVE open_shard"
        try:
            response = self.table.update_item(
                Key=self._key(study_id),
                UpdateExpression=update,
                ConditionExpression=f"#state IN ({', '.join(expected_names)}){condition}",
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

    def chunk_done(self, study_id: str, index: int) -> int:
        """Mark chunk ``index`` of the study's storage work done; how many are done now.

        A set, not a counter: a chunk retried after a failure adds nothing twice."""
        response = self.table.update_item(
            Key=self._key(study_id),
            UpdateExpression="ADD chunks_done :chunk",
            ExpressionAttributeValues={":chunk": {str(index)}},
            ReturnValues="ALL_NEW",  # UPDATED_NEW says nothing when the chunk was there
        )
        return len(response["Attributes"]["chunks_done"])

    def overdue(self, now: int | None = None) -> list[str]:
        """Ids of unfinished studies past their deadline."""
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


def timeline(study: dict[str, Any]) -> list[dict[str, Any]]:
    """The study's state changes in order; the first arrival of a file is RECEIVING."""
    entries = list(study.get("timeline", []))
    if study.get("receiving_at") is not None:
        entries.append({"state": State.RECEIVING.value, "at": study["receiving_at"]})
    return sorted(entries, key=lambda entry: float(entry["at"]))


def public_view(study: dict[str, Any], page: FilePage) -> dict[str, Any]:
    """The ``GET /status`` body: state, verdict, counts, study findings, timeline, keys and
    one page of per-file verdicts (the whole per-file report is ``validation.json``)."""
    return {
        "study_id": study["study_id"],
        "state": study["state"],
        "status": study.get("status"),
        "counts": {"declared": study.get("expected"), "received": study.get("received", 0),
                   **study.get("counts", {})},
        "findings": study.get("findings", []),
        "timeline": timeline(study),
        "keys": study.get("keys", {}),
        "files": [
            {"name": record["name"], "status": record["status"],
             "findings": record["findings"],
             "findings_omitted": record.get("findings_omitted", 0),
             "late": bool(record.get("late"))}
            for record in page.records
        ],
        "next": page.next_token,
    }
