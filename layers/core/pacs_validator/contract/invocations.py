"""The events our functions send one another, beside those of S3 and EventBridge.

Storage work in chunks: when a study is judged, its files are split into chunks, and each
chunk beyond the first is handed out as an asynchronous invocation carrying
:func:`chunk_payload`: storing to the descriptor (the only function that writes
``studies/``), rejecting to the validator (the only one that writes ``rejected/``).

Redriving: an event replayed from a dead-letter queue carries ``REDRIVE``, so its handler
first takes a FAILED study back to the state it failed in.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

CHUNK_SOURCE = "pacs-validator.chunk"
REDRIVE = "redrive"
"""Set on an event replayed from a dead-letter queue."""


class Work(str, Enum):
    """What a study's chunks are for."""

    STORE = "store"
    REJECT = "reject"


def chunk_payload(study_id: str, index: int, work: Work) -> dict[str, Any]:
    """The event a chunk worker receives."""
    return {"source": CHUNK_SOURCE, "study_id": study_id, "chunk": index, "work": work.value}


def is_chunk_payload(event: dict[str, Any]) -> bool:
    return event.get("source") == CHUNK_SOURCE
