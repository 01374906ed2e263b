"""Storage work in chunks: every invocation copies and describes a bounded number of files.

When a study is judged, its files are split into chunks of at most ``chunk_instances`` each
(written to ``work/<id>/chunks/<n>.json``). One chunk is done in place; more are handed out
as asynchronous invocations, one per chunk: storing to the descriptor (the only function that
writes ``studies/``), rejecting to the validator (the only one that writes ``rejected/``).
The worker that completes the last chunk finishes the study. Lambda retries a failed chunk
and, when its retries run out, sends it to the function's on-failure destination like any
other event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Protocol, TypeVar

import boto3

CHUNK_SOURCE = "pacs-validator.chunk"
Item = TypeVar("Item")


class Work(str, Enum):
    """What a study's chunks are for."""

    STORE = "store"
    REJECT = "reject"


class ChunkDispatcher(Protocol):
    """Starts the ``work`` on chunks ``0 .. chunks-1`` of a study, each on its own."""

    def dispatch(self, study_id: str, chunks: int, work: Work) -> None: ...


def chunk_payload(study_id: str, index: int, work: Work) -> dict[str, Any]:
    """The event a chunk worker receives."""
    return {"source": CHUNK_SOURCE, "study_id": study_id, "chunk": index, "work": work.value}


def is_chunk_payload(event: dict[str, Any]) -> bool:
    return event.get("source") == CHUNK_SOURCE


def split(items: Sequence[Item], size: int) -> list[list[Item]]:
    """``items`` in consecutive chunks of at most ``size``; always at least one chunk, so a
    study with nothing to copy still passes through the one place that finishes it."""
    return [list(items[start:start + size]) for start in range(0, len(items), size)] or [[]]


class LambdaDispatcher:
    """Hands each chunk to an asynchronous invocation of the function doing its work."""

    def __init__(self, functions: Mapping[Work, str], client: Any | None = None) -> None:
        self.functions = dict(functions)
        self.client = client or boto3.client("lambda")

    def dispatch(self, study_id: str, chunks: int, work: Work) -> None:
        for index in range(chunks):
            self.client.invoke(FunctionName=self.functions[work], InvocationType="Event",
                               Payload=json.dumps(chunk_payload(study_id, index, work)).encode())
