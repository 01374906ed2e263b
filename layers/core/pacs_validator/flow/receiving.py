"""Receiving one uploaded file: validate it, keep its description, record its verdict on its
study, and judge the study when it was the last file expected.

A file is validated and described once, on arrival; its verdict goes to the status table,
its description (the ``metadata.json`` entry and DICOM JSON) to ``work/<id>/described/``,
so storing the study never reads an instance again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pacs_validator.contract.events import DetailType, Event
from pacs_validator.contract.keys import parse_incoming_key, study_id_for_drop, work_key
from pacs_validator.dicom.metadata import DescribedInstance, describe, dicom_json
from pacs_validator.dicom.parsing import ParsedInstance
from pacs_validator.dicom.validation import InstanceResult, validate_instance
from pacs_validator.flow.judging import Judge
from pacs_validator.flow.ports import Arrival, StudyNotFound
from pacs_validator.flow.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    """What happened to one uploaded object."""

    study_id: str
    name: str
    status: int
    study_complete: bool


class Receiver:
    """Turns an object that landed under ``incoming/`` into a verdict on its study."""

    def __init__(self, services: Services, judge: Judge) -> None:
        self.services = services
        self.judge = judge

    def study_for_object(self, key: str, version: str) -> str:
        """The study an ``incoming/`` object belongs to; a plain drop gets a new one."""
        study_id = parse_incoming_key(key).study_id
        return study_id or self._create_drop(key, version)

    def _create_drop(self, key: str, version: str) -> str:
        study_id = study_id_for_drop(self.services.uploads.bucket, key, version)
        self.services.table.create(study_id, expected=1,
                                   deadline_seconds=self.services.deadline_seconds,
                                   manifest=False)
        return study_id

    def receive(self, study_id: str, key: str, version: str) -> Received:
        """Validate one uploaded object of ``study_id`` (see :meth:`study_for_object`),
        record its verdict, and judge the study when it was the last file expected."""
        services = self.services
        name = parse_incoming_key(key).name
        with services.uploads.downloaded(key) as download:
            result, parsed = validate_instance(download.path, services.config, name=name)
            source = {"key": key, "key_version": version,
                      "checksum_sha256": download.checksum_sha256}
            try:
                arrival = self._record(study_id, source, result, parsed)
            except StudyNotFound:
                if services.table.get(study_id) is not None:
                    services.table.mark_late(study_id, name)
                    logger.warning("file arrived for a study that is no longer receiving",
                                   extra={"study_id": study_id, "status": result.status})
                    return Received(study_id, name, result.status, study_complete=False)
                services.table.forget_file(study_id, name)
                study_id = self._create_drop(key, version)  # an id we never handed out
                arrival = self._record(study_id, source, result, parsed)
        services.publisher.publish(study_id, Event(
            DetailType.STUDY_UPLOADED,
            {"bucket": services.uploads.bucket, "key": key, "name": name},
            subject=f"{key}#{version}"))
        if arrival.complete and self.judge.judge_study(study_id) is None and arrival.repeated:
            self.judge.resume(study_id)  # a retry of the last file: finish what the try left
        return Received(study_id, name, result.status, study_complete=arrival.complete)

    def _record(self, study_id: str, source: dict[str, str | None], result: InstanceResult,
                parsed: ParsedInstance) -> Arrival:
        """Keep a valid file's description, then record its verdict with where it came from
        (``source``: key, version, the checksum S3 verified): in this order, so the
        description exists before the study can be judged complete."""
        instance = DescribedInstance.of(result, parsed, key=None) if result.valid else None
        if instance is not None:
            self.services.uploads.put_json(
                work_key(study_id, "described", f"{result.name}.json"),
                {"description": describe(instance).to_dict(),
                 "dicom_json": dicom_json(instance, bulk_data_uri="")},
                indent=None)
        return self.services.table.record_file(study_id, result.name,
                                               {**result.to_record(), **source})
