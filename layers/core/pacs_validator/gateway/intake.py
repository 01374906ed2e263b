"""One instance in: judged by the core's file-level rules, kept in the spool if it passed,
and the answer its sender gets. Every door of the gateway (C-STORE, STOW-RS) takes
instances through here, so each gets the same verdict and the same durability.

Before the answer, every rule that can refuse an instance runs: its format, identifying
attributes, values, pixel data and caps. The conformance engine (dciodvfy) does not: its
findings are warnings that never refuse, it costs two thirds of the judgement (about 17 of
25 ms for CT_small), and the cloud runs it on every instance for the study's verdict. Its
place before the answer is taken by the IOD table's check (the engine's fallback), whose
warnings still make a 0xB007.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, replace
from pathlib import Path

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.validation import InstanceSummary
from pacs_validator.gateway.judges import Judges
from pacs_validator.gateway.spool import Kept, Spool
from pacs_validator.gateway.statuses import (
    FAILURE_DOES_NOT_MATCH,
    FAILURE_DUPLICATE,
    FAILURE_OUT_OF_RESOURCES,
    FAILURE_PROCESSING,
    SPOOL_FULL,
    Answer,
    answer_for,
)

logger = logging.getLogger(__name__)


def before_the_answer(config: ValidatorConfig) -> ValidatorConfig:
    """``config`` without the conformance engine (module docstring)."""
    return replace(config, conformance=replace(config.conformance, enabled=False))


@dataclass(frozen=True)
class Taken:
    """What became of one received instance: its answer, and the UIDs it was read with
    (None for a data set too broken to name them)."""

    answer: Answer
    summary: InstanceSummary


class Intake:
    """Judges and keeps the instances of every door, by one set of rules, into one spool."""

    def __init__(self, config: ValidatorConfig, spool: Spool, judges: int = 0) -> None:
        self.judges = Judges(before_the_answer(config), judges)
        self.spool = spool

    def take(self, received: Path, sender: str, association: Hashable,
             study_instance_uid: str | None = None) -> Taken:
        """Judge the data set in ``received`` (a file the door wrote, which it removes
        after) and keep it if it passed; never raises. ``sender`` names who sent it (a
        calling AE title, a STOW-RS token's label), ``association`` the connection or
        request it came on, open until :meth:`ended`. With ``study_instance_uid`` (a
        STOW-RS request to one study), an instance of another study is refused, unkept,
        as ``study.mixed-studies``."""
        try:
            taken = self._judged(received, sender, association, study_instance_uid)
        except Exception as exc:  # noqa: BLE001 - one instance's failure is its own answer
            # Its type alone: an exception's text may quote a value of the instance.
            logger.error("the instance could not be judged",
                         extra={"calling_ae": sender, "error": type(exc).__name__})
            taken = Taken(Answer(FAILURE_PROCESSING, "internal.error"), InstanceSummary())
        if not taken.answer.accepted:
            self.spool.refused(sender, taken.summary.study_instance_uid,
                               taken.summary.sop_instance_uid, taken.answer.status,
                               taken.answer.comment)
        logger.info("instance answered", extra={"calling_ae": sender,
                                                "status": f"0x{taken.answer.status:04X}",
                                                "rules": taken.answer.comment})
        return taken

    def ended(self, association: Hashable) -> None:
        """The connection ``association`` closed: it sends no more instances."""
        self.spool.ended(association)

    def close(self) -> None:
        """Stop the judging workers (once every door is closed)."""
        self.judges.close()

    def _judged(self, received: Path, sender: str, association: Hashable,
                study_instance_uid: str | None) -> Taken:
        if not self.spool.has_room_for(received.stat().st_size):
            return Taken(Answer(FAILURE_OUT_OF_RESOURCES, SPOOL_FULL),
                         InstanceSummary())
        result = self.judges.judge(received)
        answer = answer_for(result)
        summary = result.summary
        if not answer.accepted:
            return Taken(answer, summary)
        if study_instance_uid not in (None, summary.study_instance_uid):
            return Taken(Answer(FAILURE_DOES_NOT_MATCH, "study.mixed-studies"), summary)
        kept = self.spool.keep(received, sender, str(summary.study_instance_uid),
                               str(summary.sop_instance_uid), result.sha256, association)
        if kept is Kept.CONFLICT:
            return Taken(Answer(FAILURE_DUPLICATE, "instance.conflict"), summary)
        return Taken(answer, summary)
