"""The serverless flow, free of Lambda: receive a file, judge a study, store or reject it.

The handlers in ``functions/`` parse their events and call these methods; everything that
decides what happens to a study is here, with its collaborators passed in (status table,
object stores, event publisher, chunk dispatcher) so tests can run it against moto.

Every step costs the same whatever the study size, except judging, which reads each file's
summary once. A file is validated and described once, on arrival; its verdict goes to the
status table, its description (the ``metadata.json`` entry and DICOM JSON) to
``work/<id>/described/``. Once the last file is in, the judge splits the files into chunks
(see :mod:`pacs_validator.chunks`); each chunk copies its files, and the worker finishing the
last one assembles ``metadata.json`` and ``dicom.json`` from the descriptions.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from pacs_validator.chunks import ChunkDispatcher, LambdaDispatcher, Work, split
from pacs_validator.config import ValidatorConfig
from pacs_validator.events import DetailType, Event, EventPublisher
from pacs_validator.metadata import (
    DescribedInstance,
    InstanceDescription,
    assemble_metadata,
    describe,
    dicom_json,
    first_of,
    instance_order,
    with_bulk_data_uri,
)
from pacs_validator.parsing import ParsedInstance
from pacs_validator.previews import render_preview
from pacs_validator.redrive import REDRIVE
from pacs_validator.settings import Settings
from pacs_validator.status import (
    OPEN_STATES,
    Arrival,
    State,
    StatusTable,
    StudyNotFound,
)
from pacs_validator.storage import (
    ObjectStore,
    manifest_key,
    parse_incoming_key,
    preview_key,
    rejected_key,
    stored_instance_key,
    study_id_for_drop,
    study_key,
    work_key,
)
from pacs_validator.study import Manifest, StudyResult, check_study
from pacs_validator.uploads import declared_files
from pacs_validator.validation import InstanceResult, validate_instance

logger = logging.getLogger(__name__)

DEPENDENCY_UNAVAILABLE = 503
PROCESSING_ERROR = 500
COPY_THREADS = 8
"""Server-side copies in flight at once within one chunk."""
Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Received:
    """What happened to one uploaded object."""

    study_id: str
    name: str
    status: int
    study_complete: bool


@dataclass(frozen=True)
class StoredStudy:
    """Where a valid study was stored, and how much of it."""

    keys: dict[str, Any]
    instances: int
    bytes: int


def announcements(study: dict[str, Any], uploads_bucket: str) -> list[Event]:
    """The events that announce the state a study item is in, from the item alone.

    Publishing follows the change of state, so a retry that finds a study already past a
    step announces it again (the events' ids are the same, so consumers see one copy): an
    event refused by EventBridge is never lost with its study moved on.
    """
    state, status = State(study["state"]), int(study.get("status") or 0)
    counts, keys = study.get("counts", {}), study.get("keys", {})
    files = counts.get("valid", 0) + counts.get("invalid", 0)
    validated = Event(DetailType.STUDY_VALIDATED, {"valid": state is not State.REJECTED
                                                   and state is not State.INCOMPLETE,
                                                   "status": status})
    if state is State.VALID:
        return [Event(DetailType.VALIDATION_SUCCESS, {
            "bucket": uploads_bucket, "files": files, "instances": counts["instances"],
            "status": status}), validated]
    if state in (State.REJECTED, State.INCOMPLETE):
        return [Event(DetailType.VALIDATION_FAILED, {
            "status": status, "state": state.value, "rules": study.get("rules", []),
            "prefix": keys["prefix"], "files": files}), validated]
    processed = Event(DetailType.STUDY_PROCESSED, {"state": state.value, "status": status})
    if state is State.STORED:
        return [Event(DetailType.METADATA_EXTRACTED, {
                    "key": keys["metadata"], "series": study["series"],
                    "instances": counts["instances"]}),
                Event(DetailType.STORAGE_COMPLETED, {
                    "prefix": keys["prefix"], "objects": counts["instances"] + 4,
                    "bytes": counts["bytes"]}),
                processed]
    return [processed] if state is State.FAILED else []


def _file_report(record: dict[str, Any]) -> dict[str, Any]:
    """One ``files[]`` entry of ``validation.json``."""
    report = InstanceResult.from_record(record).to_dict()
    for field in ("findings_omitted", "checksum_sha256"):  # checksum: what S3 verified
        if record.get(field):
            report[field] = record[field]
    return report


def validation_json(study: StudyResult, records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """``validation.json`` (the CLI's report shape for one study), piece by piece."""
    yield b'{"files": ['
    for index, record in enumerate(records):
        yield (b",\n" if index else b"\n") + json.dumps(_file_report(record)).encode()
    yield b'\n], "studies": [' + json.dumps(study.to_dict()).encode() + b"]}\n"


def validation_log(study: StudyResult, records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The human-readable ``validation.log``: one block per file, then the study verdict."""
    for record in records:
        instance = InstanceResult.from_record(record)
        verdict = "VALID" if instance.valid else "INVALID"
        lines = [f"file {instance.name}: {verdict} {instance.status} sha256={instance.sha256}"]
        lines.extend(f"  {f.severity.value} {f.rule} {f.tag or ''} {f.message}".rstrip()
                     for f in instance.findings)
        if record.get("findings_omitted"):
            lines.append(f"  ({record['findings_omitted']} more finding(s) not kept)")
        yield ("\n".join(lines) + "\n").encode()
    verdict = "VALID" if study.valid else "INVALID"
    lines = [f"study: {verdict} {study.status} ({study.instance_count} file(s))"]
    lines.extend(f"  {f.severity.value} {f.rule} {f.message}" for f in study.findings)
    yield ("\n".join(lines) + "\n").encode()


def _middle_of_each_series(records: Iterable[dict[str, Any]]) -> set[str]:
    """Names of the files to preview each series by: its middle instance in the order of
    ``metadata.json`` (see :func:`~pacs_validator.metadata.middle_instance`)."""
    series: dict[str, list[tuple[tuple[int, str], str]]] = defaultdict(list)
    for record in records:
        summary = record["summary"]
        if summary["series_instance_uid"]:
            order = instance_order(summary["instance_number"], summary["sop_instance_uid"])
            series[summary["series_instance_uid"]].append((order, record["name"]))
    return {sorted(members)[len(members) // 2][1] for members in series.values()}


def _in_parallel(work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    with ThreadPoolExecutor(max_workers=COPY_THREADS) as pool:
        return list(pool.map(work, items))


class Pipeline:
    def __init__(
        self,
        config: ValidatorConfig,
        table: StatusTable,
        uploads: ObjectStore,
        store: ObjectStore,
        publisher: EventPublisher,
        dispatcher: ChunkDispatcher,
        deadline_seconds: int = 3600,
        chunk_instances: int = 500,
    ) -> None:
        self.config = config
        self.table = table
        self.uploads = uploads
        self.store = store
        self.publisher = publisher
        self.dispatcher = dispatcher
        self.deadline_seconds = deadline_seconds
        self.chunk_instances = chunk_instances

    # -- arrival --------------------------------------------------------------------------

    def study_for_object(self, key: str, version: str) -> str:
        """The study an ``incoming/`` object belongs to; a plain drop gets a new one."""
        study_id = parse_incoming_key(key).study_id
        return study_id or self._create_drop(key, version)

    def _create_drop(self, key: str, version: str) -> str:
        study_id = study_id_for_drop(self.uploads.bucket, key, version)
        self.table.create(study_id, expected=1, deadline_seconds=self.deadline_seconds,
                          manifest=False)
        return study_id

    def receive(self, study_id: str, key: str, version: str) -> Received:
        """Validate one uploaded object of ``study_id`` (see :meth:`study_for_object`),
        record its verdict, and judge the study when it was the last file expected."""
        name = parse_incoming_key(key).name
        with self.uploads.downloaded(key) as download:
            result, parsed = validate_instance(download.path, self.config, name=name)
            source = {"key": key, "key_version": version,
                      "checksum_sha256": download.checksum_sha256}
            try:
                arrival = self._record(study_id, source, result, parsed)
            except StudyNotFound:
                if self.table.get(study_id) is not None:
                    self.table.mark_late(study_id, name)
                    logger.warning("file arrived for a study that is no longer receiving",
                                   extra={"study_id": study_id, "status": result.status})
                    return Received(study_id, name, result.status, study_complete=False)
                self.table.forget_file(study_id, name)
                study_id = self._create_drop(key, version)  # an id we never handed out
                arrival = self._record(study_id, source, result, parsed)
        self.publisher.publish(study_id, Event(
            DetailType.STUDY_UPLOADED, {"bucket": self.uploads.bucket, "key": key, "name": name},
            subject=f"{key}#{version}"))
        if arrival.complete and self.judge_study(study_id) is None and arrival.repeated:
            self.resume(study_id)  # a retry of the last file: finish what the try left
        return Received(study_id, name, result.status, study_complete=arrival.complete)

    def _record(self, study_id: str, source: dict[str, str | None], result: InstanceResult,
                parsed: ParsedInstance) -> Arrival:
        """Keep a valid file's description, then record its verdict with where it came from
        (``source``: key, version, the checksum S3 verified): in this order, so the
        description exists before the study can be judged complete."""
        instance = DescribedInstance.of(result, parsed, key=None) if result.valid else None
        if instance is not None:
            self.uploads.put_json(work_key(study_id, "described", f"{result.name}.json"), {
                "description": describe(instance).to_dict(),
                "dicom_json": dicom_json(instance, bulk_data_uri=""),
            }, indent=None)
        return self.table.record_file(study_id, result.name, {**result.to_record(), **source})

    # -- judging --------------------------------------------------------------------------

    def judge_study(self, study_id: str, overdue: bool = False, resuming: bool = False,
                    overdue_at: int | None = None) -> StudyResult | None:
        """Run the study rules once (the caller that wins the claim) and route the study:
        VALID (announced, stored by the descriptor), else REJECTED or, when ``overdue``,
        INCOMPLETE, once its files are copied to ``rejected/<id>/``. ``resuming`` judges a
        study whose judging failed before its verdict was recorded."""
        if resuming:
            claimed = self.table.transition(study_id, State.VALIDATING, (State.VALIDATING,),
                                            reason="judging resumed")
        else:
            claimed = self.table.transition(
                study_id, State.VALIDATING, OPEN_STATES if overdue else (State.RECEIVING,),
                reason="upload deadline passed" if overdue else None, overdue_at=overdue_at)
        if claimed is None:
            return None
        # Every file item, those marked late too: a file that arrived while an earlier
        # judgment was released or resumed belongs to the study as much as the others.
        records = list(self.table.files(study_id))
        missing = len(records) < int(claimed["expected"])
        if missing and not overdue:
            # A retried arrival was counted twice: wait for the files still missing.
            self.table.transition(study_id, State.RECEIVING, (State.VALIDATING,),
                                  reason="recounted")
            return None
        instances = [InstanceResult.from_record(r) for r in records]
        study = check_study(instances, self.config, self._manifest(study_id, claimed))
        outcome = State.INCOMPLETE if missing else (
            State.VALID if study.valid else State.REJECTED)
        chunks, reports = self._plan(study_id, study, records, outcome)
        unique = {i.summary.sop_instance_uid or i.name: i.size for i in instances}
        verdict: dict[str, Any] = {
            "status": study.status,
            "findings": [f.to_dict() for f in study.findings],
            "counts": {"instances": len(unique), "valid": sum(i.valid for i in instances),
                       "invalid": sum(not i.valid for i in instances),
                       "bytes": sum(unique.values())},
            "chunks": chunks,
            "reports": reports,
            "rules": sorted({f.rule for f in study.findings}
                            | {f.rule for i in instances if not i.valid for f in i.findings}),
        }
        if outcome is State.VALID:
            valid = self.table.transition(study_id, State.VALID, (State.VALIDATING,), **verdict)
            if valid is not None:
                self.announce(valid)
        else:
            settled = self.table.settle(study_id, State.VALIDATING, outcome=outcome.value,
                                        **verdict)
            if settled is not None:
                self._run_chunks(study_id, settled)
        return study

    def _manifest(self, study_id: str, study: dict[str, Any]) -> Manifest:
        if not study.get("manifest"):
            return Manifest(count=int(study["expected"]))
        files = declared_files(self.uploads.get_json(manifest_key(study_id)))
        return Manifest(names=tuple(f.name for f in files), sizes=tuple(f.size for f in files))

    def _plan(self, study_id: str, study: StudyResult, records: list[dict[str, Any]],
              outcome: State) -> tuple[int, dict[str, int]]:
        """Write the reports and the chunks of files to copy to ``work/<id>/``; how many
        chunks, and each report's size. A valid study copies each SOP instance once; a
        rejected one every file."""
        reports = {
            leaf: self.uploads.put_stream(work_key(study_id, leaf), pieces, content_type)
            for leaf, pieces, content_type in (
                ("validation.json", validation_json(study, records), "application/json"),
                ("validation.log", validation_log(study, records), "text/plain"))}
        previewed: set[str] = set()
        if outcome is State.VALID:
            first_copies: dict[str, dict[str, Any]] = {}
            for record in records:
                first_copies.setdefault(record["summary"]["sop_instance_uid"], record)
            records = list(first_copies.values())
            previewed = _middle_of_each_series(records)
        files = [{"name": r["name"], "key": r["key"], "size": r["size"],
                  "sop_instance_uid": r["summary"]["sop_instance_uid"],
                  "series_instance_uid": r["summary"]["series_instance_uid"],
                  "preview": r["name"] in previewed} for r in records]
        chunks = split(files, self.chunk_instances)
        for index, chunk in enumerate(chunks):
            self.uploads.put_json(work_key(study_id, "chunks", f"{index}.json"), chunk,
                                  indent=None)
        return len(chunks), reports

    # -- chunks ---------------------------------------------------------------------------

    def start_storage(self, study_id: str) -> StoredStudy | None:
        """Begin storing a VALID study: the stored study when one invocation was enough,
        None when its chunks were handed out (or the study is not VALID: nothing to do)."""
        study = self.table.get(study_id)
        if study is None or study["state"] != State.VALID.value:
            logger.warning("study is not VALID; nothing to store", extra={"study_id": study_id})
            return None
        return self._run_chunks(study_id, study)

    def _run_chunks(self, study_id: str, study: dict[str, Any]) -> StoredStudy | None:
        """One chunk is done here and now; more go to the dispatcher, one invocation each."""
        if int(study["chunks"]) == 1:
            return self.process_chunk(study_id, 0, study)
        work = Work.STORE if study["state"] == State.VALID.value else Work.REJECT
        self.dispatcher.dispatch(study_id, int(study["chunks"]), work)
        return None

    def handle_chunk(self, payload: dict[str, Any]) -> StoredStudy | None:
        """One chunk event (:func:`~pacs_validator.chunks.chunk_payload`), first taking the
        study back from FAILED when the event is redriven from a dead-letter queue."""
        study_id = str(payload["study_id"])
        if payload.get(REDRIVE):
            self.reopen(study_id)
        with self.failures_recorded(study_id):
            return self.process_chunk(study_id, int(payload["chunk"]))

    def process_chunk(self, study_id: str, index: int, study: dict[str, Any] | None = None
                      ) -> StoredStudy | None:
        """Copy one chunk of a VALID study to ``studies/<id>/`` (with its descriptions), or of
        a rejected one to ``rejected/<id>/``; the worker completing the last chunk finishes
        the study. Returns the stored study when this call finished storing it. ``study`` is
        the study item when the caller has just read it."""
        study = study or self.table.get(study_id)
        storing = study is not None and study["state"] == State.VALID.value
        rejecting = (study is not None and study["state"] == State.VALIDATING.value
                     and bool(study.get("outcome")))
        if study is None or not (storing or rejecting):
            logger.warning("chunk for a study with nothing to copy",
                           extra={"study_id": study_id, "chunk": index})
            if study is not None:
                self.announce(study)  # a retry after the study moved on: its events again
            return None
        files: list[dict[str, Any]] = self.uploads.get_json(
            work_key(study_id, "chunks", f"{index}.json"))
        if storing:
            part = self._store_chunk(study_id, files, single=study["counts"]["instances"] == 1)
            if int(study["chunks"]) > 1:  # another worker may be the one to assemble
                self.uploads.put_json(work_key(study_id, "parts", f"{index}.json"), part,
                                      indent=None)
        else:
            _in_parallel(lambda f: self.store.copy_from(
                self.uploads.bucket, f["key"], rejected_key(study_id, f["name"]), f["size"]),
                files)
        if self.table.chunk_done(study_id, index) < int(study["chunks"]):
            return None
        if storing:
            return self._finish_storage(study_id, study, {index: part})
        self._finish_rejection(study_id, study)
        return None

    def _store_chunk(self, study_id: str, files: list[dict[str, Any]], single: bool
                     ) -> dict[str, Any]:
        """Copy the chunk's instances; their descriptions and DICOM JSON (the chunk's part
        of metadata.json and dicom.json)."""
        def store_one(file: dict[str, Any]) -> tuple[InstanceDescription, Any]:
            target = stored_instance_key(study_id, file["sop_instance_uid"], single)
            self.store.copy_from(self.uploads.bucket, file["key"], target, file["size"])
            kept = self.uploads.get_json(work_key(study_id, "described", f"{file['name']}.json"))
            description = InstanceDescription.from_dict(kept["description"]).stored_at(target)
            return description, with_bulk_data_uri(kept["dicom_json"], target)

        stored = _in_parallel(store_one, files)
        previews: dict[str, str] = {}
        findings: list[dict[str, Any]] = []
        for file in (f for f in files if f.get("preview")):
            with self.uploads.downloaded(file["key"]) as download:
                preview = render_preview(download.path, self.config.rules)
            findings.extend(f.to_dict() for f in preview.findings)
            if preview.png is not None:
                key = preview_key(study_id, file["series_instance_uid"])
                self.store.put_bytes(key, preview.png, "image/png")
                previews[file["series_instance_uid"]] = key
        return {"descriptions": [d.to_dict() for d in first_of(d for d, _ in stored)],
                "dicom_json": [document for _, document in stored],
                "previews": previews, "findings": findings}

    def _finish_storage(self, study_id: str, study: dict[str, Any],
                        at_hand: dict[int, dict[str, Any]]) -> StoredStudy:
        """``metadata.json`` and ``dicom.json`` from the chunks' parts (those ``at_hand`` are
        not read again), the reports, STORED."""
        keys: dict[str, Any] = {
            "prefix": f"studies/{study_id}/",
            "metadata": study_key(study_id, "metadata.json"),
            "dicom_json": study_key(study_id, "dicom.json"),
            "validation_json": study_key(study_id, "validation.json"),
            "validation_log": study_key(study_id, "validation.log"),
            "previews": f"studies/{study_id}/previews/",
        }
        descriptions: list[InstanceDescription] = []
        previews: dict[str, str] = {}
        findings: list[dict[str, Any]] = list(study.get("findings", []))

        def dicom_json_pieces() -> Iterator[bytes]:
            separator = b"[\n"
            for index in range(int(study["chunks"])):
                part = at_hand.get(index) or self.uploads.get_json(
                    work_key(study_id, "parts", f"{index}.json"))
                descriptions.extend(InstanceDescription.from_dict(d)
                                    for d in part["descriptions"])
                previews.update(part["previews"])
                findings.extend(part["findings"])
                for document in part["dicom_json"]:
                    yield separator + json.dumps(document).encode()
                    separator = b",\n"
            yield b"[]\n" if separator == b"[\n" else b"\n]\n"

        self.store.put_stream(keys["dicom_json"], dicom_json_pieces(), "application/json")
        metadata = assemble_metadata(study_id, descriptions, previews)
        self.store.put_json(keys["metadata"], metadata)
        self._copy_reports(study_id, study, study_key)
        counts = study["counts"]
        stored = self.table.transition(study_id, State.STORED, (State.VALID,), keys=keys,
                                       series=metadata["counts"]["series"], findings=findings)
        if stored is not None:
            self.announce(stored)
        return StoredStudy(keys=keys, instances=counts["instances"], bytes=counts["bytes"])

    def _finish_rejection(self, study_id: str, study: dict[str, Any]) -> None:
        """The reports beside the copied files, then REJECTED (or INCOMPLETE), announced."""
        self._copy_reports(study_id, study, rejected_key)
        outcome = State(study["outcome"])
        keys = {"prefix": f"rejected/{study_id}/",
                "validation_log": rejected_key(study_id, "validation.log"),
                "validation_json": rejected_key(study_id, "validation.json")}
        ended = self.table.transition(study_id, outcome, (State.VALIDATING,), keys=keys)
        if ended is not None:
            self.announce(ended)

    def announce(self, study: dict[str, Any]) -> None:
        """Publish the events of the state ``study`` is in (see :func:`announcements`)."""
        events = announcements(study, self.uploads.bucket)
        if events:
            self.publisher.publish(str(study["study_id"]), *events)

    def resume(self, study_id: str) -> None:
        """Finish what a failed try of the study's last step left undone: judge it again if
        the verdict was not recorded, copy its rejected chunks again if it was, or announce
        the state it reached (the events may be what failed)."""
        study = self.table.get(study_id)
        if study is None:
            return
        if study["state"] != State.VALIDATING.value:
            self.announce(study)
        elif study.get("outcome"):
            self._run_chunks(study_id, study)
        else:
            self.judge_study(study_id, resuming=True)

    def _copy_reports(self, study_id: str, study: dict[str, Any],
                      key_for: Callable[[str, str], str]) -> None:
        for leaf, size in study["reports"].items():
            self.store.copy_from(self.uploads.bucket, work_key(study_id, leaf),
                                 key_for(study_id, leaf), size)

    # -- deadlines and failures -----------------------------------------------------------

    def sweep(self, now: int | None = None) -> dict[str, list[str]]:
        """End every unfinished study past its deadline: one whose declared files did not all
        arrive is INCOMPLETE; one that made no progress while VALIDATING or VALID (its
        events failed every retry and wait in a dead-letter queue) is FAILED, with the last
        error seen and the state it failed in, so a redrive can take it up again."""
        now = now if now is not None else int(time.time())
        ended: dict[str, list[str]] = {"incomplete": [], "failed": []}
        for study_id in self.table.overdue(now):
            study = self.table.get(study_id)
            if study is None or int(study.get("deadline", now)) >= now:
                continue  # moved on since the index was read
            if study["state"] in {s.value for s in OPEN_STATES}:
                if self.judge_study(study_id, overdue=True, overdue_at=now) is not None:
                    ended["incomplete"].append(study_id)
            elif self.fail(study_id, study, now):
                ended["failed"].append(study_id)
        return ended

    def fail(self, study_id: str, study: dict[str, Any], now: int) -> bool:
        """FAILED: 503 when the last error was an AWS dependency, else 500. False when the
        study moved on meanwhile (a new state has a new deadline)."""
        error = study.get("last_error") or {"status": PROCESSING_ERROR, "reason": "no progress"}
        state = State(study["state"])
        failed = self.table.transition(
            study_id, State.FAILED, (state,), overdue_at=now, status=int(error["status"]),
            failed_from=state.value,
            reason=f"no progress in {state.value} by its deadline (last error: "
                   f"{error['reason']})")
        if failed is None:
            return False
        self.announce(failed)
        return True

    def reopen(self, study_id: str) -> bool:
        """Take a FAILED study back to the state it failed in, for a redriven event to
        finish; False when it is not FAILED (nothing to do)."""
        study = self.table.get(study_id)
        if study is None or study["state"] != State.FAILED.value or not study.get("failed_from"):
            return False
        return self.table.transition(study_id, State(study["failed_from"]), (State.FAILED,),
                                     reason="redriven") is not None

    @contextmanager
    def failures_recorded(self, study_id: str) -> Iterator[None]:
        """Note an exception on the study (503 for AWS, 500 for ours) and re-raise it, so the
        event is retried and, when retries run out, lands in the dead-letter queue. The state
        is left as it is: a retry may still succeed; the sweep ends a study that stays stuck."""
        try:
            yield
        except (ClientError, BotoCoreError) as error:
            self._note(study_id, DEPENDENCY_UNAVAILABLE, type(error).__name__)
            raise
        except Exception as error:
            self._note(study_id, PROCESSING_ERROR, type(error).__name__)
            raise

    def _note(self, study_id: str, status: int, reason: str) -> None:
        try:
            self.table.note_failure(study_id, status, reason)
        except (ClientError, BotoCoreError):
            logger.warning("could not note the failure", extra={"study_id": study_id})


def pipeline_from_settings(settings: Settings) -> Pipeline:
    """The pipeline wired to the deployed resources that ``settings`` names."""
    return Pipeline(
        config=settings.validator,
        table=StatusTable(settings.status_table, settings.retention_days,
                          processing_deadline_seconds=settings.processing_deadline_seconds),
        uploads=ObjectStore(settings.uploads_bucket),
        store=ObjectStore(settings.store_bucket),
        publisher=EventPublisher(settings.event_bus),
        dispatcher=LambdaDispatcher({Work.STORE: settings.store_function,
                                     Work.REJECT: settings.reject_function}),
        deadline_seconds=settings.upload_deadline_seconds,
        chunk_instances=settings.chunk_instances,
    )
