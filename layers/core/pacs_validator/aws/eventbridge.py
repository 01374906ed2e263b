"""EventBridge adapter: the only publisher of the application's lifecycle events."""

from __future__ import annotations

import json
import time

from pacs_validator.aws.clients import Clients
from pacs_validator.aws.errors import service_errors
from pacs_validator.contract.events import SOURCE, Event, event_detail
from pacs_validator.flow.ports import PublishError


class EventBridgePublisher:
    def __init__(self, bus_name: str, clients: Clients | None = None) -> None:
        self.bus_name = bus_name
        self.clients = clients or Clients()

    @service_errors()
    def publish(self, study_id: str, *events: Event) -> list[str]:
        """Put ``events`` of one study in one PutEvents call, in order; their ids.

        One call, not one per event: on the local runtime every AWS call costs the emulator
        CPU, and on AWS it costs money. ``emitted_at`` increases through the batch so
        consumers can order events finer than EventBridge's one-second ``time``.
        """
        now = time.time()
        details = [event_detail(study_id, event, now + index / 1000)
                   for index, event in enumerate(events)]
        entries = [
            {"Source": SOURCE, "DetailType": event.detail_type.value,
             "Detail": json.dumps(detail), "EventBusName": self.bus_name}
            for event, detail in zip(events, details, strict=True)
        ]
        response = self.clients.events().put_events(Entries=entries)
        if response.get("FailedEntryCount"):
            codes = sorted({e.get("ErrorCode", "unknown") for e in response["Entries"]
                            if e.get("ErrorCode")})
            raise PublishError(f"EventBridge refused {response['FailedEntryCount']} event(s): "
                               f"{', '.join(codes)}")
        return [str(detail["event_id"]) for detail in details]
