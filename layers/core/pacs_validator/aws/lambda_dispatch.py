"""Lambda adapter: each chunk of a study's copy work, and each batch of overdue studies, as
an asynchronous invocation.

Lambda retries a failed chunk and, when its retries run out, sends it to the function's
on-failure destination like any other event (see
:mod:`pacs_validator.aws.operations.redrive`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pacs_validator.aws.clients import Clients
from pacs_validator.aws.errors import service_errors
from pacs_validator.contract.invocations import Work, chunk_payload, sweep_payload


class LambdaDispatcher:
    """Hands each chunk to an asynchronous invocation of the function doing its work (the
    flow's :class:`~pacs_validator.flow.ports.ChunkDispatcher`)."""

    def __init__(self, functions: Mapping[Work, str], clients: Clients | None = None) -> None:
        self.functions = dict(functions)
        self.clients = clients or Clients()

    def dispatch(self, study_id: str, chunks: int, work: Work) -> None:
        for index in range(chunks):
            self._invoke(work, chunk_payload(study_id, index, work))

    def dispatch_sweep(self, study_ids: Sequence[str], overdue_at: int) -> None:
        self._invoke(Work.SWEEP, sweep_payload(study_ids, overdue_at))

    @service_errors()
    def _invoke(self, work: Work, payload: dict[str, Any]) -> None:
        self.clients.lambda_().invoke(FunctionName=self.functions[work], InvocationType="Event",
                                      Payload=json.dumps(payload).encode())
