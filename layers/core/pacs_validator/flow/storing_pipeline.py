"""The part of the flow that runs after a study is judged: store a valid one (or copy a
rejected one) chunk by chunk, and recover from failures.

It is all the descriptor runs, and it imports nothing that reads DICOM: a chunk is copied
and assembled from what validation kept, so the descriptor's cold start loads no pydicom
(nor the numpy and Pillow that pydicom loads whenever it can import them). A chunk with a
series preview imports the preview code when it renders one
(:meth:`~pacs_validator.flow.storing.Storage.process_chunk`).
:class:`~pacs_validator.flow.validating_pipeline.ValidatingPipeline`, the validator's, adds
receiving and judging.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from pacs_validator.contract.invocations import REDRIVE
from pacs_validator.flow.recovery import Recovery
from pacs_validator.flow.services import Services
from pacs_validator.flow.storing import Storage, StoredStudy


class StoringPipeline:
    """Storage and recovery over one set of :class:`Services`, as the descriptor uses them."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.storage = Storage(services)
        self.recovery = Recovery(services)

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

    def reopen(self, study_id: str) -> bool:
        return self.recovery.reopen(study_id)

    def failures_recorded(self, study_id: str) -> AbstractContextManager[None]:
        return self.recovery.failures_recorded(study_id)
