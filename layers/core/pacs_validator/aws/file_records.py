"""The status table's file items: one per uploaded file name (sort key ``file#<name>``),
holding its verdict, findings, UIDs and where it came from.

A study of 20,000 files is 20,000 of these beside one small study item, so every write
costs the same whatever the study size; the whole set is read once, when the study is
judged, and a page at a time by ``GET /status``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.conditions import Key

from pacs_validator.aws.dynamodb_items import assignments, epoch_seconds, item_key, plain
from pacs_validator.aws.errors import service_errors
from pacs_validator.contract.status_view import STATUS_PAGE_BYTES, FilePage, encode_token

FILE_PREFIX = "file#"
MAX_FILE_FINDINGS = 40
"""Findings kept per file record (errors first); the rest are counted in ``findings_omitted``.
Keeps every file item far below DynamoDB's 400 KB item limit."""


def file_item(name: str) -> str:
    return f"{FILE_PREFIX}{name}"


def capped_record(record: dict[str, Any]) -> dict[str, Any]:
    """A file record with at most ``MAX_FILE_FINDINGS`` findings, errors kept first."""
    findings = sorted(record["findings"], key=lambda f: f["severity"] != "error")
    omitted = max(len(findings) - MAX_FILE_FINDINGS, 0)
    return {**record, "findings": findings[:MAX_FILE_FINDINGS], "findings_omitted": omitted}


class FileRecords:
    """The file items of the status table ``table`` (a boto3 Table resource)."""

    def __init__(self, table: Any, retention_seconds: int) -> None:
        self.table = table
        self.retention_seconds = retention_seconds

    def write(self, study_id: str, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """Set the file's record (its findings capped), keeping any flag already on it; the
        item as it was before, ``{}`` when there was none."""
        fields = {**capped_record(record), "expires_at": epoch_seconds() + self.retention_seconds}
        clauses, names, values = assignments(fields)
        previous: dict[str, Any] = self.table.update_item(
            Key=item_key(study_id, file_item(name)),
            UpdateExpression="SET " + ", ".join(clauses),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        ).get("Attributes", {})
        return previous

    def flag(self, study_id: str, name: str, flag: str) -> None:
        """Set ``flag`` (``counted``, ``late``) on the file's record."""
        self.table.update_item(Key=item_key(study_id, file_item(name)),
                               UpdateExpression="SET #flag = :true",
                               ExpressionAttributeNames={"#flag": flag},
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
            yield from (plain(item) for item in page["Items"])
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
            record = plain(item)
            size += len(json.dumps(record, default=str))
            if records and size > STATUS_PAGE_BYTES:
                return FilePage(records, encode_token(records[-1]["name"]))
            records.append(record)
        more = "LastEvaluatedKey" in page and records
        return FilePage(records, encode_token(records[-1]["name"]) if more else None)
