"""EventBridge adapter: the only publisher of the application's lifecycle events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from pacs_validator.aws.clients import Clients
from pacs_validator.aws.errors import service_errors
from pacs_validator.contract.events import SOURCE, Event, event_detail
from pacs_validator.flow.ports import PublishError

MAX_ENTRIES = 10
"""Entries one PutEvents call takes."""
MAX_REQUEST_BYTES = 256 * 1024
"""What one PutEvents call's entries may add up to, as EventBridge sizes them."""


def entry_size(entry: dict[str, str]) -> int:
    """An entry's size as EventBridge counts it: its strings in UTF-8, and 14 bytes for the
    time it is given."""
    return 14 + sum(len(entry[field].encode()) for field in ("Source", "DetailType", "Detail"))


def batches(entries: list[dict[str, str]]) -> Iterator[list[dict[str, str]]]:
    """``entries`` in order, in as few PutEvents calls as their limits allow."""
    batch: list[dict[str, str]] = []
    size = 0
    for entry in entries:
        if batch and (len(batch) == MAX_ENTRIES or size + entry_size(entry) > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size(entry)
    if batch:
        yield batch


class EventBridgePublisher:
    def __init__(self, bus_name: str, clients: Clients | None = None) -> None:
        self.bus_name = bus_name
        self.clients = clients or Clients()

    @service_errors()
    def publish(self, study_id: str, *events: Event) -> list[str]:
        """Put ``events`` of one study in order, in as few PutEvents calls as they fit in
        (10 entries, 256 KB each); their ids.

        Few calls, not one per event: on the local runtime every AWS call costs the emulator
        CPU, and on AWS it costs money. ``emitted_at`` increases through the events so
        consumers can order them finer than EventBridge's one-second ``time``.
        """
        now = time.time()
        details = [event_detail(study_id, event, now + index / 1000)
                   for index, event in enumerate(events)]
        entries = [
            {"Source": SOURCE, "DetailType": event.detail_type.value,
             "Detail": json.dumps(detail), "EventBusName": self.bus_name}
            for event, detail in zip(events, details, strict=True)
        ]
        for batch in batches(entries):
            response = self.clients.events().put_events(Entries=batch)
            if response.get("FailedEntryCount"):
                codes = sorted({e.get("ErrorCode", "unknown") for e in response["Entries"]
                                if e.get("ErrorCode")})
                raise PublishError(f"EventBridge refused {response['FailedEntryCount']} "
                                   f"event(s): {', '.join(codes)}")
        return [str(detail["event_id"]) for detail in details]
