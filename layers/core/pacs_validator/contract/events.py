"""The application's lifecycle events: their types, their ids, the shape of their details.

EventBridge delivers at least once, so every detail carries ``event_id``: a hash of the
study, the event type and what the event is about. A consumer that sees an id twice can
drop the second copy; a Lambda retry that republishes produces the same id.
Details hold ids, states, counts, codes and keys, never attribute values; ``emitted_at``
(epoch seconds) orders events finer than EventBridge's one-second ``time``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import Enum
from typing import Any

SOURCE = "pacs-validator"


class DetailType(str, Enum):
    STUDY_UPLOADED = "study.uploaded"
    VALIDATION_SUCCESS = "validation.success"
    VALIDATION_FAILED = "validation.failed"
    STUDY_VALIDATED = "study.validated"
    METADATA_EXTRACTED = "metadata.extracted"
    STORAGE_COMPLETED = "storage.completed"
    STUDY_PROCESSED = "study.processed"


@dataclass(frozen=True)
class Event:
    """One lifecycle event; ``subject`` tells apart events of one type within a study
    (the object key of a ``study.uploaded``) so each gets its own deterministic id."""

    detail_type: DetailType
    detail: dict[str, Any]
    subject: str = ""


def event_id(study_id: str, detail_type: DetailType, subject: str = "") -> str:
    text = f"{study_id}|{detail_type.value}|{subject}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def key_digest(key: str, secret: bytes) -> str:
    """What events and logs carry instead of an object key: keys hold file names, and file
    names often hold patient names. Keyed with the deployment's fingerprint key, so that no
    consumer can confirm a guessed name by hashing it with the study id the event carries."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:24]


def event_detail(study_id: str, event: Event, emitted_at: float) -> dict[str, Any]:
    """The detail as published: the event's own fields after its id, study and time."""
    return {"event_id": event_id(study_id, event.detail_type, event.subject),
            "study_id": study_id, "emitted_at": emitted_at, **event.detail}
