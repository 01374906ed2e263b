"""Study parts to the cloud: each closed part declared through ``POST /upload``, its files
sent through their presigned forms (the uploader's own code, which resumes), and its
status followed to the cloud's verdict.

Every step is recorded in the part's record before the next is taken (the spool's
:class:`~pacs_validator.gateway.spool.Stage`), so a gateway killed at any moment takes each
part up where it was: a declared part asks the cloud which of its files it has and sends
the others; a sent one asks for its verdict. Each declaration carries a client token made
from the spool's id, the part and the declaration's number, so a gateway killed between
the API's answer and its own record declares the same study again, not a second one. A
study the cloud gave up on (INCOMPLETE, its files late; FAILED) is declared anew, up to
:data:`MAX_DECLARATIONS` times. A step that fails (the API unreachable, a 5xx after the
client's own retries) is tried again later, waiting longer each time; the part says why in
``problem``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from pacs_validator.contract.states import OPEN_STATES, TERMINAL_STATES, State
from pacs_validator.gateway.spool import Spool, Stage, StudyPart, instance_file_name
from pacs_validator.transfer.client import TRANSIENT_ERRORS, ApiError, PacsClient
from pacs_validator.transfer.sending import StudyForms, send_files

logger = logging.getLogger(__name__)

MAX_DECLARATIONS = 3
"""Declarations of one part at most: after that its last state stands, and its files stay
in the spool."""
FIRST_RETRY_SECONDS = 5.0
LAST_RETRY_SECONDS = 300.0
"""A failed step waits from the first to the last of these, doubling each time."""
GIVEN_UP = (State.INCOMPLETE.value, State.FAILED.value)
"""The cloud's terminal states after which the part is declared again."""


class FilesNotSent(RuntimeError):
    """Some files of a part could not be sent, after the client's own retries."""


def declaration_token(spool_id: str, part: StudyPart) -> str:
    """The client token of ``part``'s current declaration: the same after a restart, another
    for each declaration and each part, and no UID of the study in it."""
    digest = hashlib.sha256(
        f"{part.calling_ae}\n{part.study_instance_uid}\n{part.number}".encode()).hexdigest()
    return f"{spool_id[:16]}.{digest[:32]}.{part.attempt}"


def describe(error: Exception) -> str:
    """Why a step failed, without the answer's body (it may quote the study)."""
    if isinstance(error, FilesNotSent):
        return str(error)
    if isinstance(error, ApiError):
        return f"the API answered HTTP {error.status}"
    return f"the API could not be reached ({type(error).__name__})"


def failure_reason(record: Mapping[str, Any]) -> str:
    """Why the cloud did not store one file: its status and its error rule ids."""
    rules = sorted({str(f["rule"]) for f in record.get("findings", [])
                    if f.get("severity") == "error"})
    return " ".join([str(record["status"]), *rules])


class Forwarder:
    """Moves the spool's parts to the cloud, one step at a time (module docstring)."""

    def __init__(self, spool: Spool, client: PacsClient, stable_seconds: float = 60.0) -> None:
        self.spool = spool
        self.client = client
        self.stable_seconds = stable_seconds
        self._retry: dict[tuple[str, str, int], tuple[float, float]] = {}
        """(calling AE, StudyInstanceUID, part) -> when its failed step is tried again,
        and the wait after that."""

    def step(self, now: float) -> None:
        """Close the parts that are stable, then take every part on the way one stage on."""
        for part in self.spool.closable(self.stable_seconds, now):
            self.spool.close(part)
            logger.info("study part closed", extra=log_fields(part))
        for part in self.spool.parts():
            if part.stage in (Stage.CLOSED, Stage.DECLARED, Stage.SENT) and self._due(part, now):
                self.advance(part)

    def advance(self, part: StudyPart) -> None:
        """Declare, send and follow ``part`` as far as it goes now; a failure is recorded
        in the part and its step tried again later."""
        try:
            declared = self._declare(part) if part.stage is Stage.CLOSED else None
            if part.stage is Stage.DECLARED:
                self._send(part, declared)
            if part.stage is Stage.SENT:
                self._follow(part)
        except (ApiError, FilesNotSent, *TRANSIENT_ERRORS) as error:
            part.problem = describe(error)
            self.spool.save(part)
            self._delay(part)
            logger.warning("study part step failed, to be tried again",
                           extra={**log_fields(part), "problem": part.problem})
        else:
            self._retry.pop(retry_key(part), None)

    def _declare(self, part: StudyPart) -> tuple[dict[str, Any], float]:
        files = self.spool.files(part)
        asked = time.time()
        declared = self.client.declare({name: path.stat().st_size
                                        for name, path in files.items()},
                                       client_token=declaration_token(self.spool.spool_id, part))
        part.study_id, part.stage, part.problem = str(declared["study_id"]), Stage.DECLARED, None
        self.spool.save(part)
        logger.info("study part declared", extra=log_fields(part))
        return declared, asked

    def _send(self, part: StudyPart, declared: tuple[dict[str, Any], float] | None) -> None:
        """Send the files the cloud does not have yet; on a resume, ask it which first."""
        assert part.study_id is not None  # a declared part has its study
        files = self.spool.files(part)
        received: set[str] = set()
        if declared is not None and not declared[0]["uploads"]:
            declared = None  # declared before, and it takes no more files: ask the cloud
        if declared is None:
            current = self.client.full_status(part.study_id)
            if current["state"] not in OPEN_STATES:
                part.stage = Stage.SENT
                self.spool.save(part)
                return
            received = {str(record["name"]) for record in current["files"]}
        names = [name for name in files if name not in received]
        forms = StudyForms(self.client, part.study_id, names)
        if declared is not None:
            forms.keep(*declared)
        unsent = send_files(files, names, forms, self.client, lambda sent, done: None)
        part.uploaded = len(files) - len(unsent)
        if unsent:
            raise FilesNotSent(f"{len(unsent)} of {len(files)} file(s) not sent")
        part.stage, part.problem = Stage.SENT, None
        self.spool.save(part)
        logger.info("study part sent", extra=log_fields(part))

    def _follow(self, part: StudyPart) -> None:
        assert part.study_id is not None
        response = self.client.status(part.study_id, limit=1)
        if response.status != 200:
            raise ApiError(response.status, response.body.decode(errors="replace"))
        state = str(response.json()["state"])
        if state not in TERMINAL_STATES:
            if state != part.state:
                part.state = state
                self.spool.save(part)
            return
        if state in GIVEN_UP and part.attempt < MAX_DECLARATIONS:
            self._declare_again(part, state)
            return
        document = self.client.full_status(part.study_id)
        by_name = {instance_file_name(uid): uid for uid in part.instances}
        part.failures = {by_name[str(record["name"])]: failure_reason(record)
                         for record in document["files"]
                         if record["status"] != 200 and str(record["name"]) in by_name}
        part.state, part.stored_as = state, document.get("stored_as")
        part.stage, part.problem = Stage.DONE, None
        self.spool.save(part)
        logger.info("study part done", extra=log_fields(part))
        if state == State.STORED.value:
            self.spool.drop_files(part)

    def _declare_again(self, part: StudyPart, state: str) -> None:
        assert part.study_id is not None
        logger.warning("the cloud gave up on the study part: declaring it again",
                       extra={**log_fields(part), "state": state})
        part.earlier_study_ids.append(part.study_id)
        part.study_id, part.state, part.uploaded = None, None, 0
        part.attempt += 1
        part.stage = Stage.CLOSED
        self.spool.save(part)

    def _due(self, part: StudyPart, now: float) -> bool:
        retry = self._retry.get(retry_key(part))
        return retry is None or retry[0] <= now

    def _delay(self, part: StudyPart) -> None:
        _, wait = self._retry.get(retry_key(part), (0.0, FIRST_RETRY_SECONDS))
        self._retry[retry_key(part)] = (time.time() + wait, min(wait * 2, LAST_RETRY_SECONDS))


def retry_key(part: StudyPart) -> tuple[str, str, int]:
    return part.calling_ae, part.study_instance_uid, part.number


def log_fields(part: StudyPart) -> dict[str, Any]:
    """What a log line may say of a part: its sender, number, stage and study id; never a
    UID of the study (it is the hospital's) nor a patient value."""
    return {"calling_ae": part.calling_ae, "part": part.number, "stage": part.stage.value,
            "study_id": part.study_id, "instances": len(part.instances)}
