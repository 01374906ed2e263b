"""What the flow needs from the services around it, as ``Protocol`` ports, and the errors
those services raise through them.

The adapters in :mod:`pacs_validator.aws` implement these on S3, DynamoDB, EventBridge and
Lambda; tests can implement them with anything. An adapter turns its SDK's errors into
:class:`DependencyUnavailable`, so the flow tells an unavailable service (503) from a bug of
ours (500) without knowing which SDK it runs on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pacs_validator.contract.events import Event
from pacs_validator.contract.invocations import Work
from pacs_validator.contract.states import State


class DependencyUnavailable(Exception):
    """A storage service or other AWS dependency failed or refused the call (answered 503)."""


class StudyNotFound(LookupError):
    """The study does not exist, or no longer receives files."""


class PublishError(RuntimeError):
    """The event bus refused an event."""


@dataclass(frozen=True)
class Downloaded:
    """An object in a temporary file, and the checksum S3 verified on upload."""

    path: Path
    checksum_sha256: str | None


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


class ObjectStore(Protocol):
    """One bucket: the uploads (``incoming/``, ``manifests/``, ``work/``) or the store."""

    bucket: str

    def downloaded(self, key: str) -> AbstractContextManager[Downloaded]:
        """The object in a temporary file for the length of the ``with`` block."""

    def copy_from(self, source_bucket: str, source_key: str, target_key: str,
                  size: int | None = None) -> None:
        """Copy an object of ``source_bucket`` into this bucket without reading it here."""

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
               manifest: bool = True, *, owner: str | None = None) -> bool:
        """A new study expecting ``expected`` files; False when the id already exists.
        ``owner`` is the caller that declared it (None for a plain drop)."""

    def get(self, study_id: str) -> dict[str, Any] | None: ...

    def record_file(self, study_id: str, name: str, record: dict[str, Any]) -> Arrival:
        """Store one file's verdict and count it once per name; raises
        :class:`StudyNotFound` when the study is unknown or no longer receiving."""

    def mark_late(self, study_id: str, name: str) -> None: ...

    def forget_file(self, study_id: str, name: str) -> None: ...

    def files(self, study_id: str) -> Iterator[dict[str, Any]]:
        """Every file record of the study, page by page."""

    def transition(self, study_id: str, state: State, expected: tuple[State, ...],
                   reason: str | None = None, overdue_at: int | None = None,
                   **fields: Any) -> dict[str, Any] | None:
        """Move to ``state`` from one of ``expected``: the item after, or None."""

    def settle(self, study_id: str, state: State, **fields: Any) -> dict[str, Any] | None:
        """Set ``fields`` on a study that is in ``state``: the item after, or None."""

    def note_failure(self, study_id: str, status: int, reason: str) -> None: ...

    def chunk_done(self, study_id: str, index: int) -> int:
        """Mark a chunk of the study's copy work done; how many are done now."""

    def overdue(self, now: int | None = None) -> list[str]:
        """Ids of unfinished studies past their deadline."""


class EventPublisher(Protocol):
    def publish(self, study_id: str, *events: Event) -> list[str]:
        """Publish ``events`` of one study in order; their ids. Raises
        :class:`PublishError` when the bus refuses one."""


class ChunkDispatcher(Protocol):
    def dispatch(self, study_id: str, chunks: int, work: Work) -> None:
        """Start the ``work`` on chunks ``0 .. chunks-1`` of a study, each on its own."""
