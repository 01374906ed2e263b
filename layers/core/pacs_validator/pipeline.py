"""The serverless flow, free of Lambda: receive a file, judge a study, store a valid one.

The handlers in ``functions/`` parse their events and call these methods; everything that
decides what happens to a study is here, with its collaborators passed in (status table,
object stores, event publisher) so tests can run it against moto or fakes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pacs_validator.config import ValidatorConfig
from pacs_validator.events import DetailType, Event, EventPublisher
from pacs_validator.metadata import DescribedInstance, build_metadata, dicom_json
from pacs_validator.parsing import read_instance
from pacs_validator.rules import Findings
from pacs_validator.settings import Settings
from pacs_validator.status import OPEN_STATES, State, StatusTable, StudyNotFound
from pacs_validator.storage import (
    ObjectStore,
    parse_incoming_key,
    rejected_key,
    stored_instance_key,
    study_id_for_drop,
    study_key,
)
from pacs_validator.study import Manifest, StudyResult, check_study
from pacs_validator.validation import InstanceResult, validate_instance

logger = logging.getLogger(__name__)

DEPENDENCY_UNAVAILABLE = 503
PROCESSING_ERROR = 500


@dataclass(frozen=True)
class Received:
    """What happened to one uploaded object."""

    study_id: str
    name: str
    status: int
    study_complete: bool


def _validated(study: StudyResult) -> Event:
    return Event(DetailType.STUDY_VALIDATED, {"valid": study.valid, "status": study.status})


@dataclass(frozen=True)
class StoredStudy:
    """Where a valid study was stored, and how much of it."""

    keys: dict[str, Any]
    instances: int
    bytes: int


def validation_log(study: StudyResult, instances: Iterable[InstanceResult]) -> str:
    """The human-readable ``validation.log``: one block per file, then the study verdict."""
    lines = []
    for instance in sorted(instances, key=lambda i: i.name):
        verdict = "VALID" if instance.valid else "INVALID"
        lines.append(f"file {instance.name}: {verdict} {instance.status} sha256={instance.sha256}")
        lines.extend(
            f"  {f.severity.value} {f.rule} {f.tag or ''} {f.message}".rstrip()
            for f in instance.findings
        )
    verdict = "VALID" if study.valid else "INVALID"
    lines.append(f"study: {verdict} {study.status} ({study.instance_count} file(s))")
    lines.extend(f"  {f.severity.value} {f.rule} {f.message}" for f in study.findings)
    return "\n".join(lines) + "\n"


def validation_document(study: StudyResult, instances: Iterable[InstanceResult]) -> dict[str, Any]:
    """``validation.json``: the CLI's report shape for one study."""
    return {
        "files": [i.to_dict() for i in sorted(instances, key=lambda i: i.name)],
        "studies": [study.to_dict()],
    }


class Pipeline:
    def __init__(
        self,
        config: ValidatorConfig,
        table: StatusTable,
        uploads: ObjectStore,
        store: ObjectStore,
        publisher: EventPublisher,
        deadline_seconds: int = 3600,
    ) -> None:
        self.config = config
        self.table = table
        self.uploads = uploads
        self.store = store
        self.publisher = publisher
        self.deadline_seconds = deadline_seconds

    def study_for_object(self, key: str, version: str) -> tuple[str, str]:
        """(study id, file name) for an ``incoming/`` object, creating a plain drop's study."""
        incoming = parse_incoming_key(key)
        if incoming.study_id and self.table.get(incoming.study_id) is not None:
            return incoming.study_id, incoming.name
        study_id = study_id_for_drop(self.uploads.bucket, key, version)
        self.table.create(study_id, [incoming.name], self.deadline_seconds, State.RECEIVING)
        return study_id, incoming.name

    def receive(self, study_id: str, name: str, key: str, version: str) -> Received:
        """Validate one uploaded object of ``study_id`` (see :meth:`study_for_object`),
        record its verdict, and judge the study when it completes the manifest."""
        self.publisher.publish(study_id, Event(
            DetailType.STUDY_UPLOADED, {"bucket": self.uploads.bucket, "key": key, "name": name},
            subject=f"{key}#{version}"))
        with self.uploads.downloaded(key) as path:
            result, _ = validate_instance(path, self.config, name=name)
        record = {**result.to_record(), "key": key}
        try:
            item = self.table.record_instance(study_id, name, record)
        except StudyNotFound:
            logger.warning("file arrived for a study that is no longer receiving",
                           extra={"study_id": study_id, "status": result.status})
            return Received(study_id, name, result.status, study_complete=False)
        complete = set(item["manifest"]) <= set(item["instances"])
        if complete:
            self.judge_study(study_id)
        return Received(study_id, name, result.status, study_complete=complete)

    def judge_study(self, study_id: str) -> StudyResult | None:
        """Run the study rules once (the caller that wins the claim) and route the study."""
        item = self.table.transition(study_id, State.VALIDATING, expected=(State.RECEIVING,))
        if item is None:
            return None
        instances = [InstanceResult.from_record(r) for r in item["instances"].values()]
        study = check_study(instances, self.config, Manifest(names=tuple(item["manifest"])))
        findings = [f.to_dict() for f in study.findings]
        keys = {i.name: str(item["instances"][i.name]["key"]) for i in instances}
        if study.valid:
            self.table.transition(study_id, State.VALID, (State.VALIDATING,), status=study.status,
                                  findings=findings)
            verdict = Event(DetailType.VALIDATION_SUCCESS, {
                "bucket": self.uploads.bucket, "keys": sorted(keys.values()),
                "instances": len(instances), "status": study.status})
        else:
            verdict = self._reject(study_id, study, instances, keys, (State.VALIDATING,))
        self.publisher.publish(study_id, verdict, _validated(study))
        return study

    def _reject(
        self,
        study_id: str,
        study: StudyResult,
        instances: list[InstanceResult],
        keys: dict[str, str],
        expected: tuple[State, ...],
        state: State = State.REJECTED,
    ) -> Event:
        """Copy what arrived to ``rejected/<id>/`` with the verdict; the originals stay put.

        Returns the ``validation.failed`` event for the caller to publish."""
        for name, key in sorted(keys.items()):
            self.store.copy_from(self.uploads.bucket, key, rejected_key(study_id, name))
        log_key = rejected_key(study_id, "validation.log")
        self.store.put_text(log_key, validation_log(study, instances))
        self.store.put_json(rejected_key(study_id, "validation.json"),
                            validation_document(study, instances))
        stored = {"prefix": f"rejected/{study_id}/", "validation_log": log_key}
        self.table.transition(study_id, state, expected, status=study.status,
                              findings=[f.to_dict() for f in study.findings], keys=stored)
        return Event(DetailType.VALIDATION_FAILED, {
            "status": study.status, "state": state.value,
            "rules": sorted({f.rule for f in study.findings} |
                            {f.rule for i in instances for f in i.findings if not i.valid}),
            "prefix": stored["prefix"]})

    def expire_overdue(self, now: int | None = None) -> list[str]:
        """End every study whose manifest was not fulfilled by its deadline as INCOMPLETE."""
        expired = []
        for study_id in self.table.overdue(now):
            item = self.table.get(study_id)
            if item is None or item["state"] not in {s.value for s in OPEN_STATES}:
                continue
            instances = [InstanceResult.from_record(r) for r in item["instances"].values()]
            study = check_study(instances, self.config, Manifest(names=tuple(item["manifest"])))
            keys = {i.name: str(item["instances"][i.name]["key"]) for i in instances}
            failed = self._reject(study_id, study, instances, keys, OPEN_STATES,
                                  State.INCOMPLETE)
            self.publisher.publish(study_id, failed, _validated(study))
            expired.append(study_id)
        return expired

    def store_study(self, study_id: str) -> StoredStudy | None:
        """Describe a valid study and store it under ``studies/<id>/``; None if not VALID."""
        item = self.table.get(study_id)
        if item is None or item["state"] != State.VALID.value:
            return None
        records = sorted(item["instances"].values(), key=lambda r: str(r["name"]))
        instances = [InstanceResult.from_record(r) for r in records]
        unique = {
            i.summary.sop_instance_uid: (i, str(r["key"]))
            for i, r in zip(instances, records, strict=True)
        }
        single = len(unique) == 1
        described, sidecars, stored_keys = [], [], []
        for sop_uid, (instance, source_key) in sorted(unique.items(), key=lambda kv: str(kv[0])):
            target = stored_instance_key(study_id, sop_uid, single)
            one, sidecar = self._describe(instance, source_key, target)
            described.append(one)
            sidecars.append(sidecar)
            self.store.copy_from(self.uploads.bucket, source_key, target, instance.size)
            stored_keys.append(target)
        metadata = build_metadata(study_id, described)
        study = check_study(instances, self.config, Manifest(names=tuple(item["manifest"])))
        keys: dict[str, Any] = {
            "metadata": study_key(study_id, "metadata.json"),
            "validation_log": study_key(study_id, "validation.log"),
            "validation_json": study_key(study_id, "validation.json"),
            "dicom_json": study_key(study_id, "dicom.json"),
            "instances": stored_keys,
            "prefix": f"studies/{study_id}/",
        }
        self.store.put_json(keys["metadata"], metadata)
        self.store.put_json(keys["dicom_json"], sidecars)
        self.publisher.publish(study_id, Event(DetailType.METADATA_EXTRACTED, {
            "key": keys["metadata"], "series": metadata["counts"]["series"],
            "instances": metadata["counts"]["instances"]}))
        self.store.put_text(keys["validation_log"], validation_log(study, instances))
        self.store.put_json(keys["validation_json"], validation_document(study, instances))
        stored_bytes = sum(i.size for i, _ in unique.values())
        self.table.transition(study_id, State.STORED, (State.VALID,), keys=keys)
        self.publisher.publish(
            study_id,
            Event(DetailType.STORAGE_COMPLETED, {"prefix": keys["prefix"],
                                                 "objects": len(stored_keys) + 4,
                                                 "bytes": stored_bytes}),
            Event(DetailType.STUDY_PROCESSED, {"state": State.STORED.value,
                                               "status": study.status}),
        )
        return StoredStudy(keys=keys, instances=len(stored_keys), bytes=stored_bytes)

    def _describe(
        self, instance: InstanceResult, source_key: str, target: str
    ) -> tuple[DescribedInstance, dict[str, Any]]:
        """The instance for ``metadata.json`` and its DICOM JSON sidecar entry, whose
        BulkDataURIs point at the stored copy ``target``."""
        with self.uploads.downloaded(source_key) as path:
            parsed = read_instance(path, self.config, Findings(self.config.rules))
            described = DescribedInstance.of(instance, parsed, key=target)
            if described is None:
                raise RuntimeError("a validated instance no longer reads")
            return described, dicom_json(described, bulk_data_uri=target)

    @contextmanager
    def failures_recorded(self, study_id: str) -> Iterator[None]:
        """Record an exception as FAILED (503 for AWS, 500 for ours), then re-raise it so the
        event is retried and, when retries run out, lands in the dead-letter queue."""
        try:
            yield
        except (ClientError, BotoCoreError) as error:
            self.fail(study_id, DEPENDENCY_UNAVAILABLE, type(error).__name__)
            raise
        except Exception as error:
            self.fail(study_id, PROCESSING_ERROR, type(error).__name__)
            raise

    def fail(self, study_id: str, status: int, reason: str) -> None:
        """Record that processing failed (500 ours, 503 a dependency); best effort."""
        not_terminal = tuple(s for s in State if s not in (State.STORED, State.REJECTED,
                                                           State.INCOMPLETE))
        self.table.transition(study_id, State.FAILED, not_terminal, status=status, reason=reason)


def pipeline_from_settings(settings: Settings) -> Pipeline:
    """The pipeline wired to the deployed resources that ``settings`` names."""
    return Pipeline(
        config=settings.validator,
        table=StatusTable(settings.status_table, settings.retention_days),
        uploads=ObjectStore(settings.uploads_bucket),
        store=ObjectStore(settings.store_bucket),
        publisher=EventPublisher(settings.event_bus),
        deadline_seconds=settings.upload_deadline_seconds,
    )
