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


class PublishError(RuntimeError):
    """EventBridge refused an event."""


def event_id(study_id: str, detail_type: DetailType, subject: str = "") -> str:
    text = f"{study_id}|{detail_type.value}|{subject}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EventPublisher:
    def __init__(self, bus_name: str, client: Any | None = None) -> None:
        self.bus_name = bus_name
        self.client = client or boto3.client("events")

    def publish(
        self, detail_type: DetailType, study_id: str, detail: dict[str, Any], subject: str = ""
    ) -> str:
        """Put one event; ``subject`` distinguishes events of one type within a study
        (the object key of a ``study.uploaded``). Returns the event id."""
        identifier = event_id(study_id, detail_type, subject)
        body = {"event_id": identifier, "study_id": study_id, "emitted_at": time.time(), **detail}
        response = self.client.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type.value,
                    "Detail": json.dumps(body),
                    "EventBusName": self.bus_name,
                }
            ]
        )
        if response.get("FailedEntryCount"):
            code = response["Entries"][0].get("ErrorCode", "unknown")
            raise PublishError(f"EventBridge refused {detail_type.value}: {code}")
        return identifier
