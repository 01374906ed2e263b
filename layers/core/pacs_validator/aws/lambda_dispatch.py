"""Lambda adapter: each chunk of a study's copy work as an asynchronous invocation.

Lambda retries a failed chunk and, when its retries run out, sends it to the function's
on-failure destination like any other event (see :mod:`pacs_validator.aws.redrive`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pacs_validator.aws.clients import Clients
from pacs_validator.aws.errors import service_errors
from pacs_validator.contract.invocations import Work, chunk_payload


class LambdaDispatcher:
    """Hands each chunk to an asynchronous invocation of the function doing its work (the
    flow's :class:`~pacs_validator.flow.ports.ChunkDispatcher`)."""

    def __init__(self, functions: Mapping[Work, str], clients: Clients | None = None) -> None:
        self.functions = dict(functions)
        self.clients = clients or Clients()

    @service_errors()
    def dispatch(self, study_id: str, chunks: int, work: Work) -> None:
        for index in range(chunks):
            self.clients.lambda_().invoke(FunctionName=self.functions[work], InvocationType="Event",
                               Payload=json.dumps(chunk_payload(study_id, index, work)).encode())
