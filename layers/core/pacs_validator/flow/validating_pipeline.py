"""The serverless flow, free of Lambda and of any SDK: receive a file, judge a study, store
or reject it.

The handlers in ``functions/`` parse their events and call the methods here; everything that
decides what happens to a study is in this package, written against the ports of
:mod:`pacs_validator.flow.ports`, so tests can run it against moto or anything else. Each
step is its own module: :mod:`~pacs_validator.flow.receiving`,
:mod:`~pacs_validator.flow.judging`, :mod:`~pacs_validator.flow.storing` and
:mod:`~pacs_validator.flow.recovery`; :class:`ValidatingPipeline` puts them together, on top
of the :class:`~pacs_validator.flow.storing_pipeline.StoringPipeline` that is all the
descriptor needs. What comes before a study's first file (declaring it, its upload forms,
who may read it) is :mod:`~pacs_validator.flow.uploads`, the API's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pacs_validator.contract.objects import UploadedObject
from pacs_validator.flow.judging import Judge
from pacs_validator.flow.manifests import Manifests
from pacs_validator.flow.receiving import Received, Receiver
from pacs_validator.flow.services import Services
from pacs_validator.flow.storing_pipeline import StoringPipeline


class ValidatingPipeline(StoringPipeline):
    """Every step of the flow over one set of :class:`Services`, as the validator uses them."""

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        manifests = Manifests(services.uploads)
        self.judge = Judge(services, self.storage, manifests)
        self.receiver = Receiver(services, self.judge, manifests)

    def study_for_object(self, upload: UploadedObject) -> str:
        return self.receiver.study_for_object(upload)

    def receive(self, study_id: str, upload: UploadedObject) -> Received:
        return self.receiver.receive(study_id, upload)

    def sweep(self, now: int | None = None) -> dict[str, list[str]]:
        return self.recovery.sweep(now)

    def end_overdue(self, payload: dict[str, Any],
                    seconds_left: Callable[[], float]) -> dict[str, list[str]]:
        """One batch the sweep handed out
        (:func:`~pacs_validator.contract.invocations.sweep_payload`)."""
        return self.recovery.end_overdue(self.judge, [str(i) for i in payload["study_ids"]],
                                         int(payload["overdue_at"]), seconds_left)
