"""What the flow needs from the services around it, as ``Protocol`` ports, and the errors
those services raise through them.

The adapters in :mod:`pacs_validator.aws` implement these on S3, DynamoDB, EventBridge and
Lambda; tests can implement them with anything. An adapter turns its SDK's errors into
:class:`DependencyUnavailable`, so the flow tells an unavailable service (503) from a bug of
ours (500) without knowing which SDK it runs on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from pacs_validator.contract.duplicates import StoredInstance
from pacs_validator.contract.events import Event
from pacs_validator.contract.invocations import Work
from pacs_validator.contract.records import StudyRecord
from pacs_validator.contract.states import State


class DependencyUnavailable(Exception):
    """A storage service or other AWS dependency failed or refused the call (answered 503)."""


class StudyNotFound(LookupError):
    """The study does not exist, or no longer receives files."""


class PublishError(RuntimeError):
    """The event bus refused an event."""


class CopyMismatch(RuntimeError):
    """A copy does not hold the bytes that were validated (its checksum or size differs):
    nothing may be stored from it."""


@dataclass(frozen=True)
class Downloaded:
    """An object in a temporary file: the version read, its ETag, and the checksum S3
    verified on upload (when the uploader sent one)."""

    path: Path
    checksum_sha256: str | None
    version_id: str | None = None
    etag: str | None = None


@dataclass(frozen=True)
class SourceObject:
    """An object to copy, pinned to the bytes that were read: the version, and the ETag and
    SHA-256 (hexadecimal) the copy must have. Unpinned fields are not checked."""

    key: str
    size: int | None = None
    version_id: str | None = None
    etag: str | None = None
    sha256: str | None = None


class UploadOutcome(str, Enum):
    """What one upload of a file name did to its study."""

    COUNTED = "counted"
    """The first upload of the name: its verdict is recorded and it counts toward the study."""
    REPLACED = "replaced"
    """Another upload of a name before the study was judged: its verdict replaces the one
    before, and the study is judged on these bytes."""
    REPEATED = "repeated"
    """The same upload announced again (a redelivered notification)."""
    STALE = "stale"
    """An earlier upload of the name announced after a later one: it changes nothing."""
    LATE = "late"
    """Another upload of a name after the study was judged: kept aside; neither the verdict
    nor what is stored changes."""
    UNDECLARED = "undeclared"
    """A name the study's manifest does not declare: kept aside, never validated."""


@dataclass(frozen=True)
class Arrival:
    """A file upload recorded on its study: what it did (:class:`UploadOutcome`), the study's
    counters after, and the study's owner."""

    outcome: UploadOutcome
    received: int
    expected: int
    owner: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every expected file is in, for an upload that may complete the study."""
        counted = {UploadOutcome.COUNTED, UploadOutcome.REPLACED, UploadOutcome.REPEATED}
        return self.outcome in counted and self.received >= self.expected


class ObjectStore(Protocol):
    """One bucket: the uploads (``incoming/``, ``manifests/``, ``work/``) or the store."""

    bucket: str

    def downloaded(self, key: str, version_id: str | None = None,
                   first_bytes: int | None = None) -> AbstractContextManager[Downloaded]:
        """The object (that version of it, when given; its ``first_bytes`` alone, when
        given) in a temporary file for the length of the ``with`` block."""

    def copy_from(self, source_bucket: str, source: SourceObject, target_key: str) -> None:
        """Copy an object of ``source_bucket`` into this bucket without reading it here:
        the pinned version, checked against what ``source`` pins. Raises
        :class:`CopyMismatch` when the copy holds other bytes."""

    def find_json(self, key: str) -> Any | None:
        """The JSON document at ``key``, or None when there is no such object."""

    def put_json(self, key: str, document: Any, indent: int | None = 2) -> None: ...

    def get_json(self, key: str) -> Any: ...

    def put_stream(self, key: str, pieces: Iterable[bytes], content_type: str) -> int:
        """Write ``pieces`` as one object without holding it whole; the size written."""

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...


class StatusStore(Protocol):
    """The single writer of study state: one small study item, one item per file.

    Every change of state is conditional on the state the caller expects, so that of two
    callers racing for one step exactly one wins (the others get None)."""

    def create(self, study_id: str, expected: int, deadline_seconds: int,
               manifest: bool = True, *, owner: str | None = None,
               largest_declared: int | None = None) -> bool:
        """A new study expecting ``expected`` files; False when the id already exists.
        ``owner`` is the caller that declared it (None for a plain drop);
        ``largest_declared`` caps each file its study-wide form lets in."""

    def claim_declaration(self, study_id: str, fingerprint: str) -> str:
        """Bind the id of a client token's study to the declaration ``fingerprint`` stands
        for, unless a declaration is bound to it already: the fingerprint bound (this one
        when this call bound it). Conditional, so that of declarations racing for one id,
        one binds it, before any writes the study's manifest."""

    def open_studies(self, owner: str, at_most: int) -> int:
        """How many studies of ``owner`` are open, counted up to ``at_most``."""

    def study(self, study_id: str) -> StudyRecord | None:
        """The study, read consistently; None for an unknown id."""

    def stored_instances(self, owner: str | None, sop_instance_uids: Sequence[str]
                         ) -> dict[str, StoredInstance]:
        """The index entries of those of ``sop_instance_uids`` that ``owner``'s studies
        stored before, by UID (each owner has an index of its own)."""

    def enter_stored(self, owner: str | None, entry: StoredInstance) -> bool:
        """Enter an instance ``owner`` stored in its index (a first version only where none
        is, a later one over its version before); False when it was not written."""

    def record_file(self, study_id: str, name: str, record: dict[str, Any]) -> Arrival:
        """Store one upload's verdict and count it once per name (see :class:`UploadOutcome`);
        raises :class:`StudyNotFound` when the study is unknown, or when a first upload of
        the name comes after the study stopped receiving."""

    def record_aside(self, study_id: str, name: str, outcome: UploadOutcome,
                     record: dict[str, Any]) -> Arrival:
        """Keep an upload that must not touch the study's verdict (``LATE`` or
        ``UNDECLARED``) beside the study's file records, and count it on the study."""

    def mark_late(self, study_id: str, name: str) -> None: ...

    def forget_file(self, study_id: str, name: str) -> None: ...

    def files(self, study_id: str) -> Iterator[dict[str, Any]]:
        """Every file record of the study, page by page."""

    def transition(self, study_id: str, state: State, expected: tuple[State, ...],
                   reason: str | None = None, overdue_at: int | None = None,
                   **fields: Any) -> StudyRecord | None:
        """Move to ``state`` from one of ``expected``: the study after, or None."""

    def settle(self, study_id: str, state: State, **fields: Any) -> StudyRecord | None:
        """Set ``fields`` on a study that is in ``state``: the study after, or None."""

    def note_failure(self, study_id: str, status: int, reason: str) -> None: ...

    def chunk_done(self, study_id: str, index: int) -> int:
        """Mark a chunk of the study's copy work done; how many are done now."""

    def overdue(self, now: int, limit: int) -> list[str]:
        """Ids of at most ``limit`` unfinished studies past their deadline at ``now``,
        those overdue longest first."""


class UploadForms(Protocol):
    """Signs the forms a client uploads a study's files with, straight to the bucket."""

    def presigned_post(self, key: str, max_bytes: int, expires_in: int, min_bytes: int = 1
                       ) -> dict[str, Any]:
        """A presigned POST (``url`` and ``fields``) for ``key`` (a prefix's, when it ends in
        ``${filename}``), valid ``expires_in`` seconds, for a file of ``min_bytes`` to
        ``max_bytes``."""


class EventPublisher(Protocol):
    def publish(self, study_id: str, *events: Event) -> list[str]:
        """Publish ``events`` of one study in order; their ids. Raises
        :class:`PublishError` when the bus refuses one."""


class ChunkDispatcher(Protocol):
    def dispatch(self, study_id: str, chunks: int, work: Work) -> None:
        """Start the ``work`` on chunks ``0 .. chunks-1`` of a study, each on its own."""

    def dispatch_sweep(self, study_ids: Sequence[str], overdue_at: int) -> None:
        """Start ending a batch of studies overdue at ``overdue_at``, on its own."""
