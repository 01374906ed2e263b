"""Receiving one uploaded file: validate it, record its verdict on its study, and judge the
study when it was the last file expected.

A file is validated once, on arrival; its verdict goes to the status table with, for a valid
file, the length of its head (its bytes before the pixel data), from which storing describes
it again without reading the whole instance
(:func:`~pacs_validator.dicom.description.described_again`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pacs_validator.contract.events import DetailType, Event, key_digest
from pacs_validator.contract.keys import parse_incoming_key, study_id_for_drop
from pacs_validator.contract.objects import UploadedObject
from pacs_validator.dicom.description import head_of
from pacs_validator.dicom.parsing import ParsedInstance
from pacs_validator.dicom.validation import InstanceResult, validate_instance
from pacs_validator.flow.judging import Judge
from pacs_validator.flow.manifests import Manifests
from pacs_validator.flow.ports import Arrival, StudyNotFound, UploadOutcome
from pacs_validator.flow.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    """What happened to one uploaded object: its verdict (None when it was not validated)
    and what it did to its study."""

    study_id: str
    name: str
    status: int | None
    study_complete: bool
    outcome: UploadOutcome


def storing_fields(parsed: ParsedInstance) -> dict[str, Any]:
    """What storing needs of a valid file's record: the length of its head, to describe it
    from that alone, and what describing it is estimated to cost (the judge weighs chunks by
    it, the descriptor its threads)."""
    return {"head": head_of(parsed), "estimated_bytes": parsed.estimated_bytes}


class Receiver:
    """Turns an object that landed under ``incoming/`` into a verdict on its study."""

    def __init__(self, services: Services, judge: Judge, manifests: Manifests) -> None:
        self.services = services
        self.judge = judge
        self.manifests = manifests

    def study_for_object(self, upload: UploadedObject) -> str:
        """The study an ``incoming/`` object belongs to; a plain drop gets a new one."""
        study_id = parse_incoming_key(upload.key).study_id
        return study_id or self._create_drop(upload)

    def _create_drop(self, upload: UploadedObject) -> str:
        study_id = study_id_for_drop(self.services.uploads.bucket, upload.key, upload.identity)
        self.services.table.create(study_id, expected=1,
                                   deadline_seconds=self.services.upload_deadline_seconds,
                                   manifest=False)
        return study_id

    def receive(self, study_id: str, upload: UploadedObject) -> Received:
        """Validate one uploaded object of ``study_id`` (see :meth:`study_for_object`),
        record its verdict, and judge the study when it was the last file expected.

        A name the study's manifest does not declare is kept aside before anything is
        downloaded. The version the notification names is the one validated, and its
        version id, ETag and SHA-256 are recorded, so the study is stored from exactly
        those bytes. Its events are published together, at the end (see
        :meth:`~pacs_validator.flow.services.Services.events_held`)."""
        with self.services.events_held():
            return self._receive(study_id, upload)

    def _receive(self, study_id: str, upload: UploadedObject) -> Received:
        services = self.services
        name = parse_incoming_key(upload.key).name
        manifest = self.manifests.of(study_id)
        declared = None if manifest is None else manifest.places
        if declared is not None and name not in declared:
            arrival = services.table.record_aside(study_id, name, UploadOutcome.UNDECLARED, {
                "key_version": upload.sequencer, "version_id": upload.version_id,
                "size": upload.size})
            logger.warning("upload of a name the manifest does not declare: not validated",
                           extra={"study_id": study_id,
                                  "key_digest": key_digest(upload.key, services.fingerprint_key)})
            self._announce(study_id, upload, arrival, None)
            return Received(study_id, name, None, False, arrival.outcome)
        with services.uploads.downloaded(upload.key, upload.version_id) as download:
            result, parsed = validate_instance(download.path, services.config, name=name)
            source = {"key": upload.key, "key_version": upload.sequencer,
                      "version_id": download.version_id, "etag": download.etag,
                      "checksum_sha256": download.checksum_sha256}
            try:
                arrival = self._record(study_id, source, result, parsed)
            except StudyNotFound:
                if services.table.study(study_id) is not None:
                    services.table.mark_late(study_id, name)
                    logger.warning("file arrived for a study that is no longer receiving",
                                   extra={"study_id": study_id, "status": result.status})
                    return Received(study_id, name, result.status, False, UploadOutcome.LATE)
                services.table.forget_file(study_id, name)
                study_id = self._create_drop(upload)  # an id we never handed out
                arrival = self._record(study_id, source, result, parsed)
        if arrival.outcome is UploadOutcome.LATE:
            logger.warning("file replaced after its study was judged: kept aside",
                           extra={"study_id": study_id, "status": result.status})
        self._announce(study_id, upload, arrival, (declared or {}).get(name))
        if arrival.complete and self.judge.judge_study(study_id) is None and \
                arrival.outcome is UploadOutcome.REPEATED:
            self.judge.resume(study_id)  # a retry of the last file: finish what the try left
        return Received(study_id, name, result.status, arrival.complete, arrival.outcome)

    def _announce(self, study_id: str, upload: UploadedObject, arrival: Arrival,
                  index: int | None) -> None:
        """``study.uploaded``: which declared file (its place in the manifest) and a digest
        of its key, never its name."""
        services = self.services
        detail: dict[str, Any] = {"bucket": services.uploads.bucket,
                                  "key_digest": key_digest(upload.key, services.fingerprint_key),
                                  "file_index": index,
                                  "outcome": arrival.outcome.value, "owner": arrival.owner}
        services.publish(study_id, Event(
            DetailType.STUDY_UPLOADED, detail, subject=f"{upload.key}#{upload.identity}"))

    def _record(self, study_id: str, source: dict[str, str | None], result: InstanceResult,
                parsed: ParsedInstance) -> Arrival:
        """Record a file's verdict with where it came from (``source``: key, sequencer,
        version, ETag, the checksum S3 verified) and, when it is valid, what storing it
        needs (:func:`storing_fields`)."""
        stored = storing_fields(parsed) if result.valid else {}
        return self.services.table.record_file(study_id, result.name,
                                               {**result.to_record(), **source, **stored})
