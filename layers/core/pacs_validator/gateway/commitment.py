"""Storage Commitment Push Model (PS3.4 Annex J): a sender asks, with an N-ACTION, which of
the instances it names the gateway commits to keeping; the answer, an N-EVENT-REPORT, comes
once the cloud's verdict on every one of them is in.

An instance is committed only when the cloud stored it under ``studies/<id>/`` (its part is
STORED and the verdict did not leave it out): a sender may delete its own copy on that
answer. The others fail with a reason:

- ``0x0112`` no such object instance: the gateway never accepted it;
- ``0x0110`` processing failure: the cloud did not store it (its study was rejected, or the
  verdict left it out).

An instance whose part is still on its way keeps the request waiting. Requests are kept in
the spool (``commitments/<transaction>.json``), written before the N-ACTION is answered, so
a restarted gateway reports what it was asked; a request's file is removed once its report
is delivered, so a start-up reads only what is still to report (and the reports given up
on, which stay for the operator). The report goes over a new association to
the address ``--commit-to`` gives for the requesting AE title, with the gateway in the SCP
role (PS3.4 J.3.3), as Orthanc sends it: the cloud's verdict takes longer than a sender
keeps its association open. A report that cannot be delivered is tried again, waiting
longer each time, up to :data:`MAX_REPORT_ATTEMPTS` times.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pacs_validator.contract.names import safe_name
from pacs_validator.gateway.spool import Spool, Stage, StudyPart, write_durably

logger = logging.getLogger(__name__)

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
"""The Storage Commitment Push Model SOP Class."""
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
"""Its well-known SOP Instance, which every N-ACTION and N-EVENT-REPORT names."""
REQUEST_COMMIT = 1
"""The N-ACTION's Action Type ID: Request Storage Commitment."""
ALL_COMMITTED, SOME_FAILED = 1, 2
"""The N-EVENT-REPORT's Event Type ID."""
NO_SUCH_OBJECT_INSTANCE = 0x0112
PROCESSING_FAILURE = 0x0110
MAX_REPORT_ATTEMPTS = 10
FIRST_RETRY_SECONDS = 5.0
LAST_RETRY_SECONDS = 600.0
FOLDER = "commitments"


@dataclass
class CommitmentRequest:
    """One N-ACTION: who asked, and for which instances (SOP class, SOP instance)."""

    transaction_uid: str
    calling_ae: str
    instances: list[tuple[str, str]]
    received_at: float
    attempts: int = 0
    problem: str | None = None
    """Why the last report could not be delivered."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> CommitmentRequest:
        return cls(**{**document, "instances": [tuple(pair) for pair in document["instances"]]})


@dataclass(frozen=True)
class Outcome:
    """What the gateway can say of a request now: None while an instance is on its way."""

    committed: list[tuple[str, str]]
    failed: list[tuple[str, str, int]]


def outcome(request: CommitmentRequest, parts: Iterable[StudyPart]) -> Outcome | None:
    """Committed and failed instances of ``request``, by the parts that hold them; None while
    one of them is in a part not yet judged by the cloud."""
    holders: dict[str, list[StudyPart]] = {}
    wanted = {uid for _, uid in request.instances}
    for part in parts:
        for uid in wanted.intersection(part.instances):
            holders.setdefault(uid, []).append(part)
    committed, failed = [], []
    for sop_class, uid in request.instances:
        held = holders.get(uid, [])
        if any(part.state == "STORED" and uid not in part.failures for part in held):
            committed.append((sop_class, uid))
        elif any(part.stage is not Stage.DONE for part in held):
            return None
        else:
            reason = PROCESSING_FAILURE if held else NO_SUCH_OBJECT_INSTANCE
            failed.append((sop_class, uid, reason))
    return Outcome(committed, failed)


Deliver = Callable[[CommitmentRequest, Outcome], None]
"""Sends one report to the AE that asked; raises when it could not be delivered."""


class Commitments:
    """The requests the gateway was sent, kept in the spool, and their reports."""

    def __init__(self, spool: Spool, deliver: Deliver) -> None:
        self.spool = spool
        self.deliver = deliver
        self.folder = spool.root / FOLDER
        self.folder.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._pending: dict[str, CommitmentRequest] = {}
        self._retry_at: dict[str, float] = {}
        for path in sorted(self.folder.glob("*.json")):
            request = CommitmentRequest.from_dict(json.loads(path.read_text("utf-8")))
            if request.attempts < MAX_REPORT_ATTEMPTS:
                self._pending[request.transaction_uid] = request

    def request(self, transaction_uid: str, calling_ae: str,
                instances: list[tuple[str, str]]) -> None:
        """Keep a request durably (before its N-ACTION is answered); the same transaction
        asked again replaces the first."""
        request = CommitmentRequest(transaction_uid, calling_ae, instances, time.time())
        with self._lock:
            self._save(request)
            self._pending[transaction_uid] = request
        logger.info("storage commitment requested",
                    extra={"calling_ae": calling_ae, "instances": len(instances)})

    def step(self, now: float) -> None:
        """Report every request whose instances all have their verdict."""
        with self._lock:
            due = [r for r in self._pending.values()
                   if self._retry_at.get(r.transaction_uid, 0) <= now]
        parts = self.spool.parts()
        for request in due:
            known = outcome(request, parts)
            if known is not None:
                self._report(request, known)

    def _report(self, request: CommitmentRequest, known: Outcome) -> None:
        request.attempts += 1
        try:
            self.deliver(request, known)
        except Exception as error:  # noqa: BLE001 - any failure to deliver is tried again
            request.problem = f"{type(error).__name__}: {error}"
            wait = min(FIRST_RETRY_SECONDS * 2 ** (request.attempts - 1), LAST_RETRY_SECONDS)
            self._retry_at[request.transaction_uid] = time.time() + wait
            logger.warning("storage commitment report not delivered",
                           extra={"calling_ae": request.calling_ae,
                                  "attempts": request.attempts, "problem": request.problem})
            if request.attempts >= MAX_REPORT_ATTEMPTS:
                self._forget(request)
            self._save(request)
            return
        self.path(request.transaction_uid).unlink(missing_ok=True)
        self._forget(request)
        logger.info("storage commitment reported",
                    extra={"calling_ae": request.calling_ae,
                           "committed": len(known.committed), "failed": len(known.failed)})

    def _forget(self, request: CommitmentRequest) -> None:
        with self._lock:
            self._pending.pop(request.transaction_uid, None)
            self._retry_at.pop(request.transaction_uid, None)

    def _save(self, request: CommitmentRequest) -> None:
        write_durably(self.path(request.transaction_uid), json.dumps(request.to_dict()))

    def path(self, transaction_uid: str) -> Path:
        return self.folder / f"{safe_name(transaction_uid)}.json"
