"""Validating one instance: read it, run the instance rules, summarise it for the study.

The summary (:class:`InstanceSummary`) is what study-level checks need from each instance.
It carries UIDs and counts, and *fingerprints* (keyed hashes) instead of patient and study
attribute values, so it can be stored in a status table or event without carrying PHI while
still letting the study checks see that two instances disagree.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.conformance import check_conformance
from pacs_validator.dicom.data import data_document
from pacs_validator.dicom.iod import check_iod
from pacs_validator.dicom.library_messages import library_messages_counted
from pacs_validator.dicom.limits import Limits
from pacs_validator.dicom.parsing import (
    MEDIA_STORAGE_SOP_CLASS_UID,
    PREAMBLE_LENGTH,
    ParsedInstance,
    Source,
    read_instance,
)
from pacs_validator.dicom.pixels import check_pixel_data
from pacs_validator.dicom.rules import VALID, Finding, Findings, verdict_status
from pacs_validator.dicom.structure import Garbled, LimitExceeded, Truncated, read_file_meta
from pacs_validator.dicom.values import (
    check_dates,
    check_file_meta_agreement,
    check_modality,
    check_required,
    check_single_valued,
    check_uids,
    check_value_representations,
    check_value_widths,
)

DATASET_CHECKS = (
    check_required,
    check_single_valued,
    check_uids,
    check_dates,
    check_modality,
    check_value_representations,
)
"""Rules that judge the data set alone, in the order their findings are listed."""


@dataclass(frozen=True)
class InstanceSummary:
    """What the study-level rules need to know about one instance. No attribute values."""

    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    modality: str | None = None
    instance_number: int | None = None
    study_related_instances: int | None = None
    transfer_syntax: str | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)
    """Keyword -> keyed hash of the normalised value, for patient and study attributes."""
    entities: dict[str, str] = field(default_factory=dict)
    """Keyword -> a short keyed hash, for every attribute of the patient, study, series,
    equipment and frame of reference entities the instance has (``entity_attributes``)."""
    frame_of_reference: str | None = None
    """A keyed hash of the FrameOfReferenceUID: which instances share one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceSummary:
        numbers = ("instance_number", "study_related_instances")
        fields: dict[str, Any] = {
            k: int(v) if k in numbers and v is not None else v for k, v in data.items()
        }
        return cls(**fields)


@dataclass(frozen=True)
class InstanceResult:
    """The verdict on one file."""

    name: str
    size: int
    sha256: str
    status: int
    findings: tuple[Finding, ...]
    summary: InstanceSummary

    @property
    def valid(self) -> bool:
        return self.status == VALID

    def to_dict(self) -> dict[str, Any]:
        """The ``files[]`` entry of the CLI's JSON and of validation logs."""
        return {
            "path": self.name,
            "valid": self.valid,
            "status": self.status,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_record(self) -> dict[str, Any]:
        """Everything the study rules need later, for the status table (no PHI)."""
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "status": self.status,
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> InstanceResult:
        return cls(
            name=str(record["name"]),
            size=int(record["size"]),
            sha256=str(record["sha256"]),
            status=int(record["status"]),
            findings=tuple(Finding.from_dict(f) for f in record["findings"]),
            summary=InstanceSummary.from_dict(dict(record["summary"])),
        )


ENTITY_FINGERPRINT_LENGTH = 12
"""Hex digits kept of an entity attribute's hash: 48 bits tell a study's few distinct values
apart, and keep a file record small (dozens of them per instance)."""


@cache
def entity_attributes() -> dict[str, str]:
    """Keyword -> its entity (Patient, Study, Series, Equipment, Frame of Reference), from
    ``data/attribute_places.json``: the attributes instances sharing an entity must agree on."""
    entities: dict[str, list[str]] = data_document("attribute_places.json")["entities"]
    return {keyword: entity for entity, keywords in entities.items() for keyword in keywords}


def fingerprint(value: object, salt: str, key: bytes) -> str:
    """A keyed hash (HMAC-SHA-256) of an attribute value, so equality can be compared
    without the value.

    Keyed, because patient values are few and guessable: a plain hash of a birth date, a sex
    or a six-digit id, even salted with the StudyInstanceUID stored beside it, is reversed by
    trying every candidate in under a second. Without ``key`` (the configuration's
    ``fingerprint_key``) no candidate can be tried. The salt (the StudyInstanceUID) keeps
    one value's fingerprints apart between studies.
    """
    text = str(value).strip().upper()
    if isinstance(value, PersonName):
        # Trailing empty components and groups may be omitted (PS3.5 6.2.1): "DOE^JOHN^^^"
        # and "DOE^JOHN" are the same name.
        text = "=".join(group.rstrip("^ ") for group in text.split("=")).rstrip("=")
    return hmac.new(key, f"{salt}\x00{text}".encode(), hashlib.sha256).hexdigest()[:32]


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = dataset.get(keyword)
    if value is None or value == "":
        return None
    return str(value).rstrip("\x00 ") or None


def _int(dataset: Dataset, keyword: str) -> int | None:
    try:
        value = dataset.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def summarise(parsed: ParsedInstance, config: ValidatorConfig) -> InstanceSummary:
    """The study-level facts of a read instance (empty for an unreadable file)."""
    dataset = parsed.dataset
    if dataset is None:
        return InstanceSummary()
    study_uid = _text(dataset, "StudyInstanceUID")
    salt = study_uid or ""
    key = config.fingerprint_key
    fingerprints = {
        keyword: fingerprint(dataset.get(keyword), salt, key)
        for keyword in (*config.patient_attributes, *config.study_attributes)
        if _text(dataset, keyword) is not None
    }
    entities = {
        keyword: fingerprint(dataset.get(keyword), salt, key)[:ENTITY_FINGERPRINT_LENGTH]
        for keyword in entity_attributes()
        if keyword in dataset and _text(dataset, keyword) is not None
    }
    frame_of_reference = _text(dataset, "FrameOfReferenceUID")
    return InstanceSummary(
        entities=entities,
        frame_of_reference=fingerprint(frame_of_reference, salt, key)[:ENTITY_FINGERPRINT_LENGTH]
        if frame_of_reference else None,
        sop_instance_uid=_text(dataset, "SOPInstanceUID"),
        sop_class_uid=_text(dataset, "SOPClassUID"),
        series_instance_uid=_text(dataset, "SeriesInstanceUID"),
        study_instance_uid=study_uid,
        modality=_text(dataset, "Modality"),
        instance_number=_int(dataset, "InstanceNumber"),
        study_related_instances=_int(dataset, "NumberOfStudyRelatedInstances"),
        transfer_syntax=str(parsed.transfer_syntax) if parsed.transfer_syntax else None,
        fingerprints=fingerprints,
    )


def check_instance(parsed: ParsedInstance, config: ValidatorConfig, findings: Findings,
                   source: Source | None = None) -> None:
    """Every content rule on a file that read as sound Part 10 (``source``: where it was
    read from, for the conformance engine, which reads files on disk only)."""
    dataset = parsed.dataset
    if dataset is None or parsed.transfer_syntax is None:
        return
    check_file_meta_agreement(parsed, dataset, findings)
    check_value_widths(parsed, config, findings)
    for check in DATASET_CHECKS:
        check(dataset, config, findings)
    check_pixel_data(dataset, parsed.pixel_data, parsed.transfer_syntax, config.limits, findings)
    check_standard(source, dataset, config, findings)


def check_standard(source: Source | None, dataset: Dataset, config: ValidatorConfig,
                   findings: Findings) -> None:
    """Conformance to the IOD: dciodvfy's findings at every depth when it can run on the
    file; otherwise the highdicom-derived table of top-level Type 1 and 2 attributes of
    mandatory modules, the fallback of an install without the engine."""
    settings = config.conformance
    if settings.enabled:
        if not isinstance(source, (str, os.PathLike)):
            findings.add("conformance.not-run", "conformance not checked: the file was read "
                         "from a stream, and the engine reads files on disk")
        elif check_conformance(os.fspath(source), dataset, settings,
                               config.required_attributes, findings):
            return
    check_iod(dataset, config.required_attributes, findings)


def validate_instance(
    source: Source, config: ValidatorConfig, name: str | None = None
) -> tuple[InstanceResult, ParsedInstance]:
    """Validate one file; also returns what was read, for metadata extraction.

    pydicom's own warnings while the file is read and checked are counted, never logged
    as they are (they may quote values): see :mod:`pacs_validator.dicom.library_messages`."""
    findings = Findings(config.rules)
    summary = InstanceSummary()
    with library_messages_counted():
        parsed = read_instance(source, config, findings)
        with findings.last_resort():
            check_instance(parsed, config, findings, source)
            summary = summarise(parsed, config)
    result = InstanceResult(
        name=name or parsed.name,
        size=parsed.size,
        sha256=parsed.sha256,
        status=verdict_status(findings.items),
        findings=tuple(findings.items),
        summary=summary,
    )
    return result, parsed


def validate_file(
    path: str | os.PathLike[str], config: ValidatorConfig, name: str | None = None
) -> tuple[InstanceResult, ParsedInstance]:
    """:func:`validate_instance` for a file on this machine, where one that cannot be read
    (permission denied, gone since it was listed) is that file's verdict, the finding
    ``format.unreadable``, and the others are still judged. Not for the pipeline: there a
    read that fails (S3, the network) raises, to be retried rather than judged."""
    try:
        return validate_instance(path, config, name)
    except OSError as exc:
        findings = Findings(config.rules)
        reason = exc.strerror or type(exc).__name__  # never the path: it may name a patient
        findings.add("format.unreadable", f"the file cannot be read: {reason}")
        parsed = ParsedInstance(name=name or os.fspath(path), size=0)
        result = InstanceResult(name=parsed.name, size=0, sha256="",
                                status=verdict_status(findings.items),
                                findings=tuple(findings.items), summary=InstanceSummary())
        return result, parsed


MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""The SOP class of a DICOMDIR (PS3.10 7.2): an index of a file set, not an instance."""


TEXT_PROBE_BYTES = 512
"""How much of a file is looked at to tell a text file (a README beside a CD's instances)."""


def is_text_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` is plainly text, not DICOM: its first bytes are printable
    UTF-8 with no NUL, which no DICOM file's are (a preamble, a tag or a length holds a
    zero byte). False for an empty file or one that cannot be read: its reader says why."""
    try:
        with Path(path).open("rb") as stream:
            head = stream.read(TEXT_PROBE_BYTES)
    except OSError:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        cut_character = len(head) == TEXT_PROBE_BYTES and error.start >= len(head) - 3
        if not cut_character:
            return False
        text = head[:error.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\t\r\n\f" for c in text)


def is_media_directory(path: str | os.PathLike[str], limits: Limits) -> bool:
    """Whether the file at ``path`` is a DICOMDIR: a Part 10 file whose file meta names the
    Media Storage Directory SOP class. A folder copied off a CD or DVD carries one beside
    its instances; it has no study of its own, so a reader skips it rather than judge it
    an instance that lacks every instance attribute. Reads the file meta alone, within
    ``limits``; False for a file that is no Part 10 file or cannot be read (its reader
    reports why)."""
    try:
        with Path(path).open("rb") as stream:
            head = stream.read(PREAMBLE_LENGTH + 4)
            if head[PREAMBLE_LENGTH:] != b"DICM":
                return False
            meta = read_file_meta(stream, os.fstat(stream.fileno()).st_size, limits)
    except (OSError, Truncated, Garbled, LimitExceeded):
        return False
    sop_class = meta.get(MEDIA_STORAGE_SOP_CLASS_UID, b"").rstrip(b"\x00 ")
    return sop_class == MEDIA_STORAGE_DIRECTORY.encode()
