"""The ``GET /studies`` body: a caller's studies, one short entry each, and how its pages are
addressed (``next`` tokens).

A token says where a page stopped on the status table's ``owner-created-index`` and nothing
else: for an owner's own listing it holds no owner at all (the API fills in the caller's),
so that no token, handed on or forged, reads another owner's rows. Only an admin's listing
of every owner carries the owner its page stopped at; an owner's listing refuses such a
token, and an admin's refuses an owner's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pacs_validator.contract.keys import is_study_id
from pacs_validator.contract.status_view import PageTokenError, study_counts

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
UID_MAX_LENGTH = 64
"""A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters."""
TOKEN_MAX_LENGTH = 4096
OWNER_MAX_LENGTH = 2048
"""An owner is a token's label or an IAM principal's ARN: DynamoDB's limit for a partition
key is 2,048 bytes."""
CREATED_AT_BOUND = 10**12
"""Creation times are epoch seconds: a token's beyond this one is not ours."""


def is_dicom_uid(text: str) -> bool:
    """Whether ``text`` has the form of a DICOM UID (not whether anything has it)."""
    return len(text) <= UID_MAX_LENGTH and UID_PATTERN.match(text) is not None


def listed_uid(told: Iterable[str | None]) -> tuple[str | None, int]:
    """The StudyInstanceUID a study is listed by, of those its files told (``told``, one
    per file, None for a file that told none): the well-formed one most of them tell, the
    first told on a tie, or None; and how many distinct ones they told. Either is small
    whatever the study size, so the study item stays bounded."""
    counts = Counter(uid for uid in told if uid)
    listed = next((uid for uid, _ in counts.most_common() if is_dicom_uid(uid)), None)
    return listed, len(counts)


@dataclass(frozen=True)
class ListCursor:
    """Where a page of a listing stopped: the last study's creation time and id and, in an
    admin's listing of every owner only, its owner."""

    created_at: int
    study_id: str
    owner: str | None = None


@dataclass(frozen=True)
class StudyPage:
    """One page of study items in the listing's order, and where the next one starts."""

    studies: list[dict[str, Any]]
    after: ListCursor | None


def encode_cursor(cursor: ListCursor) -> str:
    """The opaque ``next`` token of the page after ``cursor``."""
    fields: list[Any] = [cursor.created_at, cursor.study_id]
    if cursor.owner is not None:
        fields.append(cursor.owner)
    text = json.dumps(fields, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(token: str, *, every_owner: bool) -> ListCursor:
    """The cursor of a ``next`` token this API handed out for this kind of listing (an
    owner's own, or an admin's of ``every_owner``); :class:`PageTokenError` for any other."""
    refused = PageTokenError("next is not a page token of this listing")
    if len(token) > TOKEN_MAX_LENGTH:
        raise refused
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise refused from error
    if not isinstance(fields, list) or len(fields) != (3 if every_owner else 2):
        raise refused
    created_at, study_id, *owner = fields
    if (not isinstance(created_at, int) or isinstance(created_at, bool)
            or not 0 <= created_at < CREATED_AT_BOUND
            or not isinstance(study_id, str) or not is_study_id(study_id)):
        raise refused
    if owner and not _is_owner(owner[0]):
        raise refused
    return ListCursor(created_at, study_id, owner[0] if owner else None)


def _is_owner(value: object) -> bool:
    """Whether a token's owner could be one: a string DynamoDB takes as a partition key."""
    if not isinstance(value, str) or not value:
        return False
    try:
        return len(value.encode()) <= OWNER_MAX_LENGTH
    except UnicodeEncodeError:
        return False


def list_entry(study: dict[str, Any]) -> dict[str, Any]:
    """A study as ``GET /studies`` lists it: ids, where it stands, when it was declared and
    its counts. ``study_instance_uid`` is null until the study is judged (and when no file
    told one); ``study_instance_uids`` says how many its files told (more than one: the
    study mixed studies, and the one listed is the one most of its files tell)."""
    return {
        "study_id": study["study_id"],
        "study_instance_uid": study.get("study_instance_uid"),
        "study_instance_uids": study.get("study_instance_uids", 0),
        "owner": study.get("owner"),
        "state": study["state"],
        "status": study.get("status"),
        "created_at": study["created_at"],
        "counts": study_counts(study),
    }
