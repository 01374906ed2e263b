"""The serverless flow, free of Lambda and of any SDK: receive a file, judge a study, store
or reject it.

The handlers in ``functions/`` parse their events and call the methods here; everything that
decides what happens to a study is in this package, written against the ports of
:mod:`pacs_validator.flow.ports`, so tests can run it against moto or anything else. Each
step is its own module: :mod:`~pacs_validator.flow.receiving`,
:mod:`~pacs_validator.flow.judging`, :mod:`~pacs_validator.flow.storing` and
:mod:`~pacs_validator.flow.recovery`; :class:`Pipeline` puts them together.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from pacs_validator.contract.invocations import REDRIVE
from pacs_validator.contract.objects import UploadedObject
from pacs_validator.flow.judging import Judge
from pacs_validator.flow.manifests import Manifests
from pacs_validator.flow.receiving import Received, Receiver
from pacs_validator.flow.recovery import Recovery
from pacs_validator.flow.services import Services
from pacs_validator.flow.storing import Storage, StoredStudy


class Pipeline:
    """The steps of the flow over one set of :class:`Services`, as the handlers use them."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.storage = Storage(services)
        manifests = Manifests(services.uploads)
        self.judge = Judge(services, self.storage, manifests)
        self.receiver = Receiver(services, self.judge, manifests)
        self.recovery = Recovery(services, self.judge)

    def study_for_object(self, upload: UploadedObject) -> str:
        return self.receiver.study_for_object(upload)

    def receive(self, study_id: str, upload: UploadedObject) -> Received:
        return self.receiver.receive(study_id, upload)

    def start_storage(self, study_id: str) -> StoredStudy | None:
        return self.storage.start(study_id)

    def handle_chunk(self, payload: dict[str, Any]) -> StoredStudy | None:
        """One chunk event (:func:`~pacs_validator.contract.invocations.chunk_payload`),
        first taking the study back from FAILED when the event is redriven from a
        dead-letter queue."""
        study_id = str(payload["study_id"])
        if payload.get(REDRIVE):
            self.recovery.reopen(study_id)
        with self.recovery.failures_recorded(study_id):
            return self.storage.process_chunk(study_id, int(payload["chunk"]))

    def sweep(self, now: int | None = None) -> dict[str, list[str]]:
        return self.recovery.sweep(now)

    def reopen(self, study_id: str) -> bool:
        return self.recovery.reopen(study_id)

    def failures_recorded(self, study_id: str) -> AbstractContextManager[None]:
        return self.recovery.failures_recorded(study_id)
