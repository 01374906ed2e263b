"""When something fails: errors noted on the study, deadlines swept, failed studies
reopened for a redriven event.

An exception does not end a study: it is noted (``last_error``: 503 for a dependency, 500
for ours) and re-raised, so Lambda retries the event and, when retries run out, its
dead-letter queue keeps it. A study that stays stuck is ended by the sweep: INCOMPLETE when
its declared files did not all arrive in time, FAILED when it made no progress while
VALIDATING or VALID. A redrive takes a FAILED study back to the state it failed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pacs_validator.contract.records import LastError, StudyRecord
from pacs_validator.contract.states import OPEN_STATES, State
from pacs_validator.flow.ports import DependencyUnavailable
from pacs_validator.flow.services import Services

if TYPE_CHECKING:  # judging validates (pydicom): the descriptor, which never sweeps, skips it
    from pacs_validator.flow.judging import Judge

logger = logging.getLogger(__name__)

DEPENDENCY_UNAVAILABLE = 503
PROCESSING_ERROR = 500
SWEEP_MOST = 2000
"""Overdue studies one sweep hands out, at most: its query reads a few hundred kilobytes of
the index's keys, and the schedule runs it every minute."""
SWEEP_BATCH = 10
"""Overdue studies one invocation ends: judging one as it is costs about 13 AWS calls, more
for a large one (its file items are read)."""
SWEEP_SECONDS_TO_SPARE = 90.0
"""Time left in an invocation below which it ends no further overdue study and hands the
rest of its batch out again: room for judging one large study."""


class Recovery:
    def __init__(self, services: Services) -> None:
        self.services = services

    def sweep(self, now: int | None = None) -> dict[str, list[str]]:
        """Hand out the studies past their deadline, in batches of :data:`SWEEP_BATCH`, each
        to an invocation of its own that ends them (:meth:`end_overdue`): at most
        :data:`SWEEP_MOST` a run, those overdue longest first. The sweep itself ends none,
        so a flood of overdue studies costs it one query and a few invocations, and the
        studies behind the flood are reached by the next run."""
        now = now if now is not None else int(time.time())
        overdue = self.services.table.overdue(now, SWEEP_MOST)
        for start in range(0, len(overdue), SWEEP_BATCH):
            self.services.dispatcher.dispatch_sweep(overdue[start:start + SWEEP_BATCH], now)
        return {"handed_out": overdue}

    def end_overdue(self, judge: Judge, study_ids: Sequence[str], overdue_at: int,
                    seconds_left: Callable[[], float]) -> dict[str, list[str]]:
        """End each study still past its deadline at ``overdue_at``: one whose declared
        files did not all arrive is INCOMPLETE (``judge`` judges it as it is); one that made
        no progress while VALIDATING or VALID (its events failed every retry and wait in a
        dead-letter queue) is FAILED, with the last error seen and the state it failed in,
        so a redrive can take it up again. When fewer than :data:`SWEEP_SECONDS_TO_SPARE`
        are left of the invocation (``seconds_left``), the rest are handed out again."""
        ended: dict[str, list[str]] = {"incomplete": [], "failed": [], "handed_back": []}
        for index, study_id in enumerate(study_ids):
            if seconds_left() < SWEEP_SECONDS_TO_SPARE:
                ended["handed_back"] = list(study_ids[index:])
                self.services.dispatcher.dispatch_sweep(ended["handed_back"], overdue_at)
                break
            study = self.services.table.study(study_id)
            if study is None or (study.deadline is None or study.deadline >= overdue_at):
                continue  # moved on since the index was read
            if study.state in OPEN_STATES:
                if judge.judge_overdue(study_id, overdue_at) is not None:
                    ended["incomplete"].append(study_id)
            elif self.fail(study_id, study, overdue_at):
                ended["failed"].append(study_id)
        return ended

    def fail(self, study_id: str, study: StudyRecord, now: int) -> bool:
        """FAILED: 503 when the last error was an AWS dependency, else 500. False when the
        study moved on meanwhile (a new state has a new deadline)."""
        error = study.last_error or LastError(PROCESSING_ERROR, "no progress")
        state = study.state
        failed = self.services.table.transition(
            study_id, State.FAILED, (state,), overdue_at=now, status=error.status,
            failed_from=state.value,
            reason=f"no progress in {state.value} by its deadline (last error: "
                   f"{error.reason})")
        if failed is None:
            return False
        self.services.announce(failed)
        return True

    def reopen(self, study_id: str) -> bool:
        """Take a FAILED study back to the state it failed in, for a redriven event to
        finish; False when it is not FAILED (nothing to do)."""
        study = self.services.table.study(study_id)
        if study is None or study.state is not State.FAILED or study.failed_from is None:
            return False
        return self.services.table.transition(study_id, study.failed_from,
                                              (State.FAILED,), reason="redriven") is not None

    @contextmanager
    def failures_recorded(self, study_id: str) -> Iterator[None]:
        """Note an exception on the study (503 for AWS, 500 for ours) and re-raise it, so the
        event is retried and, when retries run out, lands in the dead-letter queue. The state
        is left as it is: a retry may still succeed; the sweep ends a study that stays stuck."""
        try:
            yield
        except DependencyUnavailable as error:
            self._note(study_id, DEPENDENCY_UNAVAILABLE, str(error))
            raise
        except Exception as error:
            self._note(study_id, PROCESSING_ERROR, type(error).__name__)
            raise

    def _note(self, study_id: str, status: int, reason: str) -> None:
        try:
            self.services.table.note_failure(study_id, status, reason)
        except DependencyUnavailable:
            logger.warning("could not note the failure", extra={"study_id": study_id})
