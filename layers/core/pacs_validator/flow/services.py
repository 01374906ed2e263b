"""What every step of the flow works with: the rules, the ports, the deployment's limits,
and the one way a study's state is announced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.flow.announcements import announcements
from pacs_validator.flow.ports import ChunkDispatcher, EventPublisher, ObjectStore, StatusStore


@dataclass
class Services:
    """The collaborators of one pipeline; the steps share one instance, so replacing a
    port here (a test's dispatcher, say) replaces it for all of them."""

    config: ValidatorConfig
    table: StatusStore
    uploads: ObjectStore
    store: ObjectStore
    publisher: EventPublisher
    dispatcher: ChunkDispatcher
    deadline_seconds: int = 3600
    """How long a plain drop (a one-file study nobody declared) may take to arrive."""
    chunk_instances: int = 500
    """Most files one invocation copies when a study is stored or rejected."""

    def announce(self, study: dict[str, Any]) -> None:
        """Publish the events of the state ``study`` is in (see :func:`announcements`)."""
        events = announcements(study, self.uploads.bucket)
        if events:
            self.publisher.publish(str(study["study_id"]), *events)
