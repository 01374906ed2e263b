"""The status table's index of stored SOP instances: one item per owner and SOPInstanceUID
stored (partition key ``sop#<owner digest>#<SOPInstanceUID>``, sort key ``stored``), naming
the study id it is stored under, the SHA-256 of its bytes and its version.

Each owner has an index of its own: a study is told only of its owner's stored studies, so
that no caller learns another's study id, nor gets links to another's metadata, by sending
an instance that caller stored. The same instance sent by two owners is stored for each.

An entry is written when its instance is copied to ``studies/``, and never expires: the
stored study does not either. Looked up when a study is judged, a hundred keys per request
(BatchGetItem's most), so that judging 10,000 instances costs 100 requests more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from pacs_validator.aws.dynamodb_items import item_key, timestamp
from pacs_validator.aws.errors import is_conditional_failure
from pacs_validator.contract.duplicates import StoredInstance

SOP_PREFIX = "sop#"
STORED_ITEM = "stored"
KEYS_PER_BATCH = 100
"""BatchGetItem's most keys per request."""
OWNER_DIGEST_CHARS = 16
UNPROCESSED_RETRIES = 8
"""Rounds of asking again for the keys a throttled BatchGetItem left unprocessed."""


def stored_key(owner: str | None, sop_instance_uid: str) -> dict[str, str]:
    """The key of an owner's entry (a plain drop's owner is None): the owner by a digest, as
    a label may hold any character."""
    digest = hashlib.sha256((owner or "").encode()).hexdigest()[:OWNER_DIGEST_CHARS]
    return item_key(f"{SOP_PREFIX}{digest}#{sop_instance_uid}", STORED_ITEM)


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class StoredInstances:
    """The index entries of the status table ``table`` (a boto3 Table resource)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def find(self, owner: str | None, sop_instance_uids: Sequence[str]
             ) -> dict[str, StoredInstance]:
        """The entries of those of ``sop_instance_uids`` that ``owner`` stored, read
        consistently, by SOPInstanceUID."""
        found: dict[str, StoredInstance] = {}
        resource = self.table.meta.client
        for batch in _batches(sorted(set(sop_instance_uids)), KEYS_PER_BATCH):
            request: dict[str, Any] = {self.table.name: {
                "Keys": [stored_key(owner, uid) for uid in batch], "ConsistentRead": True}}
            for _ in range(UNPROCESSED_RETRIES):
                answer = resource.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table.name, []):
                    entry = _entry(item)
                    found[entry.sop_instance_uid] = entry
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RuntimeError("the index of stored instances left keys unprocessed")
        return found

    def enter(self, owner: str | None, entry: StoredInstance) -> bool:
        """Enter an instance ``owner`` stored: a first version only where the index has none (of two
        studies storing one instance at once, the first keeps it), a later version over
        the version before it. Whether the entry was written."""
        item = {**stored_key(owner, entry.sop_instance_uid),
                "sop_instance_uid": entry.sop_instance_uid, "stored_in": entry.study_id,
                "sha256": entry.sha256, "version": entry.version, "stored_at": timestamp()}
        condition = ("attribute_not_exists(study_id)" if entry.version == 1
                     else "attribute_not_exists(study_id) OR version < :version")
        values = {} if entry.version == 1 else {":version": entry.version}
        try:
            self.table.put_item(Item=item, ConditionExpression=condition,
                                **({"ExpressionAttributeValues": values} if values else {}))
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True


def _entry(item: dict[str, Any]) -> StoredInstance:
    return StoredInstance(sop_instance_uid=str(item["sop_instance_uid"]),
                          study_id=str(item["stored_in"]), sha256=str(item["sha256"]),
                          version=int(item.get("version", 1)))
