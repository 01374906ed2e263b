"""The studies of an owner, newest first, a page at a time (``GET /studies``), read from the
status table's sparse ``owner-created-index``.

Only study items carry ``owner`` (file items never do), and only those a caller declared
through the API (a plain drop has no owner): the index holds one small row per such study,
its keys and its ``study_instance_uid``, and no file. It projects nothing that changes as
files arrive, so an arrival writes nothing to it; the page's study items are then read
whole, consistently, in one batch. A search by StudyInstanceUID filters the index rows it
reads, at most :data:`ROWS_READ_AT_MOST` per request, and hands back where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from pacs_validator.aws.dynamodb_items import STUDY_ITEM, item_key, plain
from pacs_validator.aws.errors import DependencyUnavailable
from pacs_validator.contract.study_list import ListCursor, StudyPage

LIST_INDEX = "owner-created-index"
ROWS_READ_AT_MOST = 1000
"""Index rows one request reads at most while it filters by StudyInstanceUID: a row is its
keys and the UID (a few hundred bytes), so about 60 read units of one query's 1 MB, and a
page stays well within the API's timeout; past them the page ends, maybe short or empty,
with a ``next`` token where the reading stopped."""
BATCH_ATTEMPTS = 4
"""Reads of the keys a batch left unprocessed (throttling) before the page gives up."""


class StudyListing:
    """Pages of one owner's studies (a Query of the index, newest first) or of every
    owner's (an admin's: a Scan of the index, whose rows are study items only, in no
    particular order)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def page(self, owner: str | None, limit: int, after: ListCursor | None = None,
             study_instance_uid: str | None = None) -> StudyPage:
        """At most ``limit`` study items of ``owner`` (every owner's when None) after
        ``after``, only those listed by ``study_instance_uid`` when it is given."""
        kwargs: dict[str, Any] = {"IndexName": LIST_INDEX}
        read: Callable[..., dict[str, Any]] = self.table.scan
        if owner is not None:
            kwargs.update(KeyConditionExpression=Key("owner").eq(owner), ScanIndexForward=False)
            read = self.table.query
        if study_instance_uid is not None:
            kwargs["FilterExpression"] = Attr("study_instance_uid").eq(study_instance_uid)
        if after is not None:
            kwargs["ExclusiveStartKey"] = {
                **item_key(after.study_id, STUDY_ITEM), "created_at": after.created_at,
                "owner": owner if owner is not None else after.owner}
        rows, last = self._rows(read, kwargs, limit, filtered=study_instance_uid is not None)
        cursor = None if last is None else ListCursor(
            int(last["created_at"]), str(last["study_id"]),
            owner=None if owner is not None else str(last["owner"]))
        return StudyPage(self._items(rows), cursor)

    @staticmethod
    def _rows(read: Callable[..., dict[str, Any]], kwargs: dict[str, Any], limit: int,
              filtered: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Up to ``limit`` index rows, and the key the next page starts after (None when
        the index has no more). Unfiltered, each read asks for the rows still wanted;
        filtered, for the rows still allowed (:data:`ROWS_READ_AT_MOST`)."""
        rows: list[dict[str, Any]] = []
        scanned = 0
        while True:
            wanted = limit - len(rows)
            page = read(**kwargs, Limit=ROWS_READ_AT_MOST - scanned if filtered else wanted)
            scanned += int(page["ScannedCount"])
            found, last = page["Items"], page.get("LastEvaluatedKey")
            rows.extend(found[:wanted])
            if len(found) > wanted:  # the page ends inside what was read: at its last row
                return rows, rows[-1]
            if last is None or len(rows) == limit or scanned >= ROWS_READ_AT_MOST:
                return rows, last
            kwargs["ExclusiveStartKey"] = last

    def _items(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The study items of ``rows``, in their order; one gone since (expired) is left
        out. :class:`DependencyUnavailable` when DynamoDB keeps some unprocessed."""
        if not rows:
            return []
        name = self.table.name
        request: dict[str, Any] = {name: {
            "Keys": [item_key(str(row["study_id"]), STUDY_ITEM) for row in rows],
            "ConsistentRead": True}}
        found: dict[str, dict[str, Any]] = {}
        for attempt in range(BATCH_ATTEMPTS):
            answer = self.table.meta.client.batch_get_item(RequestItems=request)
            found.update((str(item["study_id"]), plain(item))
                         for item in answer["Responses"].get(name, []))
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return [found[str(row["study_id"])] for row in rows
                        if str(row["study_id"]) in found]
            time.sleep(0.05 * 2**attempt)
        raise DependencyUnavailable("UnprocessedKeys")
