"""Judging a study once its files are in: the study rules, the verdict, the reports, and the
plan of what to copy where.

Exactly one caller judges a study: the one whose conditional claim moves it to VALIDATING.
Judging reads each file's record once (page by page), so it is the one step whose cost
grows with the study; everything after it is split into chunks of bounded size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from enum import Enum
from typing import Any, TypeVar

from pacs_validator.contract.keys import stored_study_keys, work_key
from pacs_validator.contract.records import PlannedFile, StudyCounts, StudyRecord, Verdict
from pacs_validator.contract.states import OPEN_STATES, State
from pacs_validator.contract.study_list import listed_uid
from pacs_validator.dicom.limits import ELEMENT_WEIGHT
from pacs_validator.dicom.metadata import instance_order
from pacs_validator.dicom.rules import NOT_DICOM, OVER_A_CAP, verdict_status
from pacs_validator.dicom.study import Manifest, StudyResult, check_study
from pacs_validator.dicom.validation import InstanceResult
from pacs_validator.flow.duplicates import Duplicates, instance_records, sort_duplicates
from pacs_validator.flow.manifests import Manifests
from pacs_validator.flow.reports import validation_json, validation_log
from pacs_validator.flow.services import Services
from pacs_validator.flow.storing import ESTIMATED_BYTES_AT_ONCE, Storage

Item = TypeVar("Item")


CHUNK_ESTIMATED_BYTES = ESTIMATED_BYTES_AT_ONCE
"""What describing the instances of one chunk is estimated to cost, at most (see
:func:`~pacs_validator.dicom.limits.estimated_bytes`; an instance over it is a chunk
alone): no more than the chunk's threads may describe at once, so a chunk keeps no more
DICOM JSON until its part is written than it held while describing, and its time is
bounded alike. Five files each just under the element, item, value and loaded-size caps
made one chunk by their elements alone, and peaked at 1.9 GB; a CT or MR slice is
estimated at a megabyte or two, so ordinary chunks are cut by their count alone."""


def split(items: Sequence[Item], size: int, weight: Callable[[Item], int] = lambda _: 0,
          budget: int = 0) -> list[list[Item]]:
    """``items`` in consecutive chunks of at most ``size`` items and, when ``budget`` is
    given, at most ``budget`` of their ``weight`` (an item heavier than that is a chunk
    alone); always at least one chunk, so a study with nothing to copy still passes through
    the one place that finishes it."""
    chunks: list[list[Item]] = [[]]
    carried = 0
    for item in items:
        heavy = bool(budget) and carried + weight(item) > budget
        if len(chunks[-1]) == size or (heavy and chunks[-1]):
            chunks.append([])
            carried = 0
        chunks[-1].append(item)
        carried += weight(item)
    return chunks


def chunk_file(record: dict[str, Any], preview: bool, version: int = 1) -> PlannedFile:
    """A file as a chunk lists it: what storing needs of its record (where it is, the bytes
    it was judged on, its head and what describing it is estimated to cost), whether it
    is its series' preview instance, and the version of its instance it is stored as. A
    record written before estimates were is weighed by its data elements alone."""
    summary = record["summary"]
    return PlannedFile(
        name=record["name"], key=record["key"], size=record["size"],
        version_id=record.get("version_id"), etag=record.get("etag"),
        sha256=record.get("sha256") or None, head=record.get("head"),
        estimated_bytes=record.get("estimated_bytes",
                                   ELEMENT_WEIGHT * record.get("elements", 0)),
        transfer_syntax=summary.get("transfer_syntax"),
        sop_instance_uid=summary["sop_instance_uid"],
        series_instance_uid=summary["series_instance_uid"], preview=preview, version=version)


def chunks_of(files: Sequence[PlannedFile], size: int) -> list[list[PlannedFile]]:
    """The chunks one study is stored or rejected in: at most ``size`` files and
    :data:`CHUNK_ESTIMATED_BYTES` of estimated cost each."""
    return split(files, size, weight=lambda file: file.estimated_bytes,
                 budget=CHUNK_ESTIMATED_BYTES)


def _middle_of_each_series(records: Iterable[dict[str, Any]]) -> set[str]:
    """Names of the files to preview each series by: its middle instance in the order of
    ``metadata.json`` (see :func:`~pacs_validator.dicom.metadata.middle_instance`)."""
    series: dict[str, list[tuple[tuple[int, str], str]]] = defaultdict(list)
    for record in records:
        summary = record["summary"]
        if summary["series_instance_uid"]:
            order = instance_order(summary["instance_number"], summary["sop_instance_uid"])
            series[summary["series_instance_uid"]].append((order, record["name"]))
    return {sorted(members)[len(members) // 2][1] for members in series.values()}


NOT_KEPT_WHEN_REJECTED = frozenset({NOT_DICOM, OVER_A_CAP})
"""The verdicts of files a rejected study does not keep: they may be any bytes at all."""


def kept_when_rejected(records: Iterable[dict[str, Any]],
                       manifest: Manifest) -> list[dict[str, Any]]:
    """The files of a rejected study copied to ``rejected/<id>/``: those that read as DICOM
    within every cap (valid, failing content rules, or failed by us), each within the size
    declared for it.

    A holder of the study-wide form may send any bytes up to ``MaxUploadBytes`` under a
    declared name; what is not DICOM (400), over a cap (413) or larger than declared is
    named in the reports and left in ``incoming/`` to expire after ``RetentionDays``, so
    that ``rejected/`` never holds more than the study declared."""
    declared = dict(zip(manifest.names, manifest.sizes, strict=False))
    return [r for r in records if int(r["status"]) not in NOT_KEPT_WHEN_REJECTED
            and int(r["size"]) <= declared.get(r["name"], int(r["size"]))]


class Judging(Enum):
    """Why a study is judged, which says from which states the judge may claim it and what
    becomes of it when some of its files are missing."""

    COMPLETE = "complete"
    """Its last expected file arrived: claimed from RECEIVING; a file found missing (an
    arrival counted twice) sends it back to wait for the rest."""
    OVERDUE = "overdue"
    """Its upload deadline passed: claimed from AWAITING_UPLOAD or RECEIVING and judged as
    it is, INCOMPLETE when files are missing."""
    RESUMED = "resumed"
    """A try failed after claiming it and before its verdict was recorded: claimed again
    from VALIDATING."""


class Judge:
    """Claims a study, runs the study rules and routes it: VALID (announced, stored by the
    descriptor), else REJECTED or INCOMPLETE once its files are copied to ``rejected/``."""

    def __init__(self, services: Services, storage: Storage, manifests: Manifests) -> None:
        self.services = services
        self.storage = storage
        self.manifests = manifests

    def judge_study(self, study_id: str) -> StudyResult | None:
        """Judge a study whose last expected file arrived (:attr:`Judging.COMPLETE`): the
        study rules' result, or None when another caller won the claim or files are
        still missing."""
        claimed = self.services.table.transition(study_id, State.VALIDATING,
                                                 (State.RECEIVING,))
        return None if claimed is None else self._judge(claimed, Judging.COMPLETE)

    def judge_overdue(self, study_id: str, overdue_at: int) -> StudyResult | None:
        """Judge a study still open past its upload deadline at ``overdue_at``
        (:attr:`Judging.OVERDUE`); None when it moved on meanwhile."""
        claimed = self.services.table.transition(
            study_id, State.VALIDATING, OPEN_STATES, reason="upload deadline passed",
            overdue_at=overdue_at)
        return None if claimed is None else self._judge(claimed, Judging.OVERDUE)

    def resume(self, study_id: str) -> None:
        """Finish what a failed try of the study's last step left undone: judge it again if
        the verdict was not recorded (:attr:`Judging.RESUMED`), copy its rejected chunks
        again if it was, or announce the state it reached (the events may be what
        failed)."""
        table = self.services.table
        study = table.study(study_id)
        if study is None:
            return
        if study.state is not State.VALIDATING:
            self.services.announce(study)
        elif study.outcome:
            self.storage.run_chunks(study)
        else:
            claimed = table.transition(study_id, State.VALIDATING, (State.VALIDATING,),
                                       reason="judging resumed")
            if claimed is not None:
                self._judge(claimed, Judging.RESUMED)

    def _judge(self, claimed: StudyRecord, why: Judging) -> StudyResult | None:
        """Run the study rules once (the caller that won the claim) and route the study:
        VALID (announced, stored by the descriptor), else REJECTED or INCOMPLETE, once its
        files are copied to ``rejected/<id>/``."""
        table, study_id = self.services.table, claimed.study_id
        # Every file item, those marked late too: a file that arrived while an earlier
        # judgment was released or resumed belongs to the study as much as the others.
        records = list(table.files(study_id))
        missing = len(records) < claimed.expected
        if missing and why is not Judging.OVERDUE:
            # A retried arrival was counted twice: wait for the files still missing.
            table.transition(study_id, State.RECEIVING, (State.VALIDATING,), reason="recounted")
            return None
        instances = [InstanceResult.from_record(r) for r in records]
        manifest = self._manifest(claimed)
        study, duplicates = self._with_duplicates(
            check_study(instances, self.services.config, manifest), records, missing,
            claimed.owner)
        outcome = State.INCOMPLETE if missing else (
            State.VALID if study.valid else State.REJECTED)
        chunks, reports = self._plan(study_id, study, records, outcome, manifest, duplicates)
        unique = {i.summary.sop_instance_uid or i.name: i.size for i in instances}
        uid, uids = listed_uid(i.summary.study_instance_uid for i in instances)
        verdict = Verdict(
            status=study.status,
            findings=[f.to_dict() for f in study.findings],
            counts=StudyCounts(instances=len(unique), valid=sum(i.valid for i in instances),
                               invalid=sum(not i.valid for i in instances),
                               bytes=sum(unique.values()),
                               acknowledged=len(duplicates.acknowledged),
                               versioned=len(duplicates.versions)),
            chunks=chunks,
            reports=reports,
            rules=sorted({f.rule for f in study.findings}
                         | {f.rule for i in instances if not i.valid for f in i.findings}),
            study_instance_uid=uid, study_instance_uids=uids,
        )
        if outcome is State.VALID and duplicates.stored_as:
            self._acknowledge(study_id, duplicates.stored_as, verdict)
        elif outcome is State.VALID:
            valid = table.transition(study_id, State.VALID, (State.VALIDATING,),
                                     **verdict.fields())
            if valid is not None:
                self.services.announce(valid)
        else:
            settled = table.settle(study_id, State.VALIDATING, outcome=outcome.value,
                                   **verdict.fields())
            if settled is not None:
                self.storage.run_chunks(settled)
        return study

    def _with_duplicates(self, study: StudyResult, records: list[dict[str, Any]],
                         missing: bool, owner: str | None) -> tuple[StudyResult, Duplicates]:
        """The study's verdict with what its owner's index of stored instances says of a
        study that passed its rules (see :mod:`~pacs_validator.flow.duplicates`)."""
        if missing or not study.valid:
            return study, Duplicates()
        services = self.services
        instances = instance_records(records)
        stored = services.table.stored_instances(owner, list(instances))
        duplicates = sort_duplicates(instances, stored, services.duplicate_policy,
                                     services.config)
        findings = (*study.findings, *duplicates.findings)
        return (replace(study, findings=findings,
                        status=verdict_status(list(findings), (study.status,))), duplicates)

    def _acknowledge(self, study_id: str, stored_as: str, verdict: Verdict) -> None:
        """A study whose every instance is stored already, identical: STORED as it is,
        under the study id holding it (``stored_as``), with nothing copied."""
        stored = self.services.table.transition(
            study_id, State.STORED, (State.VALIDATING,), reason=f"stored already as {stored_as}",
            **{**verdict.fields(), "chunks": 0, "stored_as": stored_as,
               "keys": stored_study_keys(stored_as)})
        if stored is not None:
            self.services.announce(stored)

    def _manifest(self, study: StudyRecord) -> Manifest:
        if not study.manifest:
            return Manifest(count=study.expected)
        declared = self.manifests.of(study.study_id)
        if declared is None:
            raise LookupError(f"the manifest of study {study.study_id} is missing")
        return Manifest(names=tuple(f.name for f in declared.files),
                        sizes=tuple(f.size for f in declared.files))
    def _plan(self, study_id: str, study: StudyResult, records: list[dict[str, Any]],
              outcome: State, manifest: Manifest, duplicates: Duplicates
              ) -> tuple[int, dict[str, int]]:
        """Write the reports and the chunks of files to copy to ``work/<id>/``; how many
        chunks, and each report's size. A valid study copies each SOP instance once, but
        none that was stored before, identical (``duplicates``); a rejected one the files
        :func:`kept_when_rejected` keeps. Each file is pinned to the version, ETag and
        SHA-256 its record was judged on."""
        uploads = self.services.uploads
        reports = {
            leaf: uploads.put_stream(work_key(study_id, leaf), pieces, content_type)
            for leaf, pieces, content_type in (
                ("validation.json", validation_json(study, records), "application/json"),
                ("validation.log", validation_log(study, records), "text/plain"))}
        previewed: set[str] = set()
        if outcome is State.VALID:
            first_copies: dict[str, dict[str, Any]] = {}
            for record in records:
                first_copies.setdefault(record["summary"]["sop_instance_uid"], record)
            records = [r for r in first_copies.values()
                       if r["name"] not in duplicates.acknowledged]
            previewed = _middle_of_each_series(records)
        else:
            records = kept_when_rejected(records, manifest)
        files = [chunk_file(r, preview=r["name"] in previewed,
                            version=duplicates.versions.get(r["name"], 1)) for r in records]
        chunks = chunks_of(files, self.services.chunk_instances)
        for index, chunk in enumerate(chunks):
            uploads.put_json(work_key(study_id, "chunks", f"{index}.json"),
                             [file.to_dict() for file in chunk], indent=None)
        return len(chunks), reports
