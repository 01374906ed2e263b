"""The status table's file items: one per uploaded file name (sort key ``file#<name>``),
holding its verdict, findings, UIDs and where it came from.

A study of 20,000 files is 20,000 of these beside one small study item, so every write
costs the same whatever the study size; the whole set is read once, when the study is
judged, and a page at a time by ``GET /status``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from pacs_validator.aws.dynamodb_items import (
    assignments,
    epoch_seconds,
    item_key,
    plain,
    timestamp,
)
from pacs_validator.aws.errors import is_conditional_failure, service_errors
from pacs_validator.contract.states import OPEN_STATES
from pacs_validator.contract.status_view import STATUS_PAGE_BYTES, FilePage, encode_token

FILE_PREFIX = "file#"
ASIDE_PREFIX = "aside#"
MAX_ASIDE_ITEMS = 100
"""Uploads kept aside (late or undeclared) that get an item of their own; more are only
counted on the study item, so a client posting name after name cannot grow the table."""
_DESERIALIZER = TypeDeserializer()
ASIDE_FIELDS = ("status", "key_version", "version_id", "sha256", "size")
MAX_FILE_FINDINGS = 40
"""Findings kept per file record (errors first); the rest are counted in ``findings_omitted``.
Keeps every file item far below DynamoDB's 400 KB item limit."""


PACKED_FIELDS = ("findings", "summary")
"""The bulky part of a file record, stored as one attribute ``packed`` of zlib-compressed JSON
(AWS's advice for large attribute values). DynamoDB bills a write by the kilobyte of the
whole item, and these fields (the findings' messages, the UIDs) are most of it; a study's
records are all read back when it is judged, where parsing them attribute by attribute took
most of the time. No expression filters on them or updates them in place."""


def file_item(name: str) -> str:
    return f"{FILE_PREFIX}{name}"


def capped_record(record: dict[str, Any]) -> dict[str, Any]:
    """A file record with at most ``MAX_FILE_FINDINGS`` findings, errors kept first."""
    findings = sorted(record["findings"], key=lambda f: f["severity"] != "error")
    omitted = max(len(findings) - MAX_FILE_FINDINGS, 0)
    return {**record, "findings": findings[:MAX_FILE_FINDINGS], "findings_omitted": omitted}


def stored_fields(record: dict[str, Any]) -> dict[str, Any]:
    """A file record as its item holds it: capped, its ``PACKED_FIELDS`` packed."""
    fields = capped_record(record)
    packed = {field: fields.pop(field) for field in PACKED_FIELDS if field in fields}
    return {**fields, "packed": zlib.compress(json.dumps(packed, separators=(",", ":")).encode())}


def record_of(item: dict[str, Any]) -> dict[str, Any]:
    """The file record an item holds. An item written before records were packed holds
    its fields as they are."""
    record: dict[str, Any] = plain(item)
    packed = record.pop("packed", None)
    if packed is not None:
        record.update(json.loads(zlib.decompress(bytes(packed))))
    return record


class FileRecords:
    """The file items of the status table ``table`` (a boto3 Table resource)."""

    def __init__(self, table: Any, retention_seconds: int) -> None:
        self.table = table
        self.retention_seconds = retention_seconds

    def create(self, study_id: str, name: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """Write the first record of a name: None when it was, else the record already
        there (left as it was).

        A conditional put, where an update would need an expression of a clause per field:
        the same write unit on AWS, and on the local stack's moto a quarter of the time
        (moto parses and walks such an expression anew on each call)."""
        try:
            self.table.put_item(
                Item={**stored_fields(record), **item_key(study_id, file_item(name)),
                      "expires_at": epoch_seconds() + self.retention_seconds},
                ConditionExpression="attribute_not_exists(study_id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if is_conditional_failure(error):
                old = error.response.get("Item")  # as the wire has it: not deserialised
                return (record_of({key: _DESERIALIZER.deserialize(value)
                                   for key, value in old.items()})
                        if old else self.get(study_id, name))
            raise
        return None

    def get(self, study_id: str, name: str) -> dict[str, Any]:
        item = self.table.get_item(Key=item_key(study_id, file_item(name)),
                                   ConsistentRead=True).get("Item")
        return record_of(item) if item else {}

    def replace(self, study_id: str, name: str, record: dict[str, Any],
                previous: dict[str, Any], study_key: dict[str, str]) -> bool | None:
        """Replace the record ``previous`` with another upload's, in one transaction with
        the check that the study is still receiving: True when replaced, False when the
        study was judged (nothing changed), None when another upload's record replaced
        ``previous`` first (nothing changed; read it again). An item written before records
        were packed loses its unpacked fields: the packed ones replace them."""
        fields = {**stored_fields(record), "expires_at": epoch_seconds() + self.retention_seconds}
        clauses, names, values = assignments(fields)
        values.update({":previous": previous["key_version"], ":one": 1})
        unchanged = "key_version = :previous"
        if previous.get("version_id"):
            values[":previous_version"] = previous["version_id"]
            unchanged += " AND version_id = :previous_version"
        open_values = {f":open{index}": state.value for index, state in enumerate(OPEN_STATES)}
        try:
            self.table.meta.client.transact_write_items(TransactItems=[
                {"ConditionCheck": {
                    "TableName": self.table.name, "Key": study_key,
                    "ConditionExpression": f"#state IN ({', '.join(open_values)})",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": open_values}},
                {"Update": {
                    "TableName": self.table.name, "Key": item_key(study_id, file_item(name)),
                    "UpdateExpression": "SET " + ", ".join(clauses)
                                        + f" REMOVE {', '.join(PACKED_FIELDS)}"
                                        + " ADD replacements :one",
                    "ConditionExpression": unchanged,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values}},
            ])
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return None
            raise
        return True

    def keep_aside(self, study_id: str, name: str, outcome: str, record: dict[str, Any],
                   ordinal: int) -> None:
        """The item of an upload kept aside, the ``ordinal``-th of its study: written for the
        first ``MAX_ASIDE_ITEMS`` (one per name and outcome; a later one updates it)."""
        if ordinal > MAX_ASIDE_ITEMS:
            return
        last = {field: record[field] for field in ASIDE_FIELDS if record.get(field) is not None}
        self.table.update_item(
            Key=item_key(study_id, f"{ASIDE_PREFIX}{outcome}#{name}"),
            UpdateExpression="SET #name = :name, outcome = :outcome, #last = :last, "
                             "expires_at = :expires ADD uploads :one",
            ExpressionAttributeNames={"#name": "name", "#last": "last"},
            ExpressionAttributeValues={
                ":name": name, ":outcome": outcome, ":one": 1,
                ":last": {**last, "at": timestamp()},
                ":expires": epoch_seconds() + self.retention_seconds})

    def aside(self, study_id: str, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` uploads kept aside, for the first page of ``GET /status``."""
        page = self.table.query(
            KeyConditionExpression=Key("study_id").eq(study_id)
            & Key("item").begins_with(ASIDE_PREFIX), Limit=limit)
        return [{key: value for key, value in plain(item).items()
                 if key not in ("study_id", "item", "expires_at")} for item in page["Items"]]

    def mark_late(self, study_id: str, name: str) -> None:
        """Set ``late`` on the file's record."""
        self.table.update_item(Key=item_key(study_id, file_item(name)),
                               UpdateExpression="SET late = :true",
                               ExpressionAttributeValues={":true": True})

    def forget(self, study_id: str, name: str) -> None:
        self.table.delete_item(Key=item_key(study_id, file_item(name)))

    def every(self, study_id: str) -> Iterator[dict[str, Any]]:
        """Every file record of the study in name order, read consistently page by page."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("study_id").eq(study_id)
            & Key("item").begins_with(FILE_PREFIX),
            "ConsistentRead": True,
        }
        while True:
            with service_errors():
                page = self.table.query(**kwargs)
            yield from (record_of(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def page(self, study_id: str, limit: int, after: str | None = None) -> FilePage:
        """Up to ``limit`` file records after the file named ``after``, and no more than
        ``STATUS_PAGE_BYTES`` of them, with the token of the next page."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("study_id").eq(study_id)
            & Key("item").begins_with(FILE_PREFIX),
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = item_key(study_id, file_item(after))
        page = self.table.query(**kwargs)
        records: list[dict[str, Any]] = []
        size = 0
        for item in page["Items"]:
            record = record_of(item)
            size += len(json.dumps(record, default=str))
            if records and size > STATUS_PAGE_BYTES:
                return FilePage(records, encode_token(records[-1]["name"]))
            records.append(record)
        more = "LastEvaluatedKey" in page and records
        return FilePage(records, encode_token(records[-1]["name"]) if more else None)
