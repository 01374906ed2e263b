"""The events our functions send one another, beside those of S3 and EventBridge.

Storage work in chunks: when a study is judged, its files are split into chunks, and each
chunk beyond the first is handed out as an asynchronous invocation carrying
:func:`chunk_payload`: storing to the descriptor (the only function that writes
``studies/``), rejecting to the validator (the only one that writes ``rejected/``).

The deadline sweep reads the overdue studies and hands them out in batches, each an
asynchronous invocation of the validator carrying :func:`sweep_payload`, so that however many
studies are overdue at once, no invocation ends more than a batch.

Redriving: an event replayed from a dead-letter queue carries ``REDRIVE``, so its handler
first takes a FAILED study back to the state it failed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

CHUNK_SOURCE = "pacs-validator.chunk"
SWEEP_SOURCE = "pacs-validator.sweep"
REDRIVE = "redrive"
"""Set on an event replayed from a dead-letter queue."""


class Work(str, Enum):
    """What a study's chunks are for."""

    STORE = "store"
    REJECT = "reject"
    SWEEP = "sweep"
    """Not chunks: a batch of overdue studies to end (:func:`sweep_payload`)."""


def chunk_payload(study_id: str, index: int, work: Work) -> dict[str, Any]:
    """The event a chunk worker receives."""
    return {"source": CHUNK_SOURCE, "study_id": study_id, "chunk": index, "work": work.value}


def is_chunk_payload(event: dict[str, Any]) -> bool:
    return event.get("source") == CHUNK_SOURCE


def sweep_payload(study_ids: Sequence[str], overdue_at: int) -> dict[str, Any]:
    """The event ending a batch of studies that were past their deadline at ``overdue_at``
    (epoch seconds): each is ended only if it still is by then."""
    return {"source": SWEEP_SOURCE, "work": Work.SWEEP.value, "study_ids": list(study_ids),
            "overdue_at": overdue_at}


def is_sweep_payload(event: dict[str, Any]) -> bool:
    return event.get("source") == SWEEP_SOURCE
