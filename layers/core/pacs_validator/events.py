"""Lifecycle events on the application's EventBridge bus. The only publisher.

EventBridge delivers at least once, so every detail carries ``event_id``: a hash of the
study, the event type and what the event is about. A consumer that sees an id twice can
drop the second copy; a Lambda retry that republishes produces the same id.
Details hold ids, states, counts, codes and keys, never attribute values; ``emitted_at``
(epoch seconds) orders events finer than EventBridge's one-second ``time``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import boto3

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


class PublishError(RuntimeError):
    """EventBridge refused an event."""


def event_id(study_id: str, detail_type: DetailType, subject: str = "") -> str:
    text = f"{study_id}|{detail_type.value}|{subject}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EventPublisher:
    def __init__(self, bus_name: str, client: Any | None = None) -> None:
        self.bus_name = bus_name
        self.client = client or boto3.client("events")

    def publish(self, study_id: str, *events: Event) -> list[str]:
        """Put ``events`` of one study in one PutEvents call, in order; their ids.

        One call, not one per event: on the local runtime every AWS call costs the emulator
        CPU, and on AWS it costs money. ``emitted_at`` increases through the batch so
        consumers can order events finer than EventBridge's one-second ``time``.
        """
        now = time.time()
        identifiers = [event_id(study_id, e.detail_type, e.subject) for e in events]
        entries = [
            {
                "Source": SOURCE,
                "DetailType": event.detail_type.value,
                "Detail": json.dumps({"event_id": identifier, "study_id": study_id,
                                      "emitted_at": now + index / 1000, **event.detail}),
                "EventBusName": self.bus_name,
            }
            for index, (event, identifier) in enumerate(zip(events, identifiers, strict=True))
        ]
        response = self.client.put_events(Entries=entries)
        if response.get("FailedEntryCount"):
            codes = sorted({e.get("ErrorCode", "unknown") for e in response["Entries"]
                            if e.get("ErrorCode")})
            raise PublishError(f"EventBridge refused {response['FailedEntryCount']} event(s): "
                               f"{', '.join(codes)}")
        return identifiers
