"""The records the flow reads and writes, typed: a study as the status table keeps it, the
verdict the judge records on it, and a file as the judge plans its copy.

The status table's item and the chunk files keep their stored shape (the adapters and the
reports rely on it); these types are how the code reads them, by attribute, so that a field
the flow needs is named once, here, and checked by mypy rather than spelled as a string
key wherever it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pacs_validator.contract.states import State


@dataclass(frozen=True)
class StudyCounts:
    """What a judged study holds: distinct instances, files valid and invalid, the bytes
    of its distinct instances, and of those how many were stored before, identical
    (acknowledged, not stored again), or stored as a new version."""

    instances: int = 0
    valid: int = 0
    invalid: int = 0
    bytes: int = 0
    acknowledged: int = 0
    versioned: int = 0

    @property
    def files(self) -> int:
        """Files judged: valid or not, a repeated instance counted each time."""
        return self.valid + self.invalid

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class LastError:
    """The last error noted on a study whose event will be retried: 503 for an AWS
    dependency, 500 for ours."""

    status: int
    reason: str


@dataclass(frozen=True)
class Verdict:
    """What judging records on a study: its status and findings, its counts, how many
    chunks its copy work is cut in, the size of each report, and the ids of the rules its
    study or its invalid files broke; and the StudyInstanceUID the study is listed and
    found by (``GET /studies``)."""

    status: int
    findings: list[dict[str, Any]]
    counts: StudyCounts
    chunks: int
    reports: dict[str, int]
    rules: list[str]
    study_instance_uid: str | None = None
    """The one most of its files tell (the first told, on a tie); None when none told a
    well-formed one."""
    study_instance_uids: int = 0
    """How many distinct ones its files told: more than one, the upload mixed studies."""

    def fields(self) -> dict[str, Any]:
        """The verdict as the study item's fields."""
        return {"status": self.status, "findings": self.findings,
                "counts": self.counts.to_dict(), "chunks": self.chunks,
                "reports": self.reports, "rules": self.rules,
                "study_instance_uid": self.study_instance_uid,
                "study_instance_uids": self.study_instance_uids}


@dataclass(frozen=True)
class StudyRecord:
    """One study as the status table keeps it, small whatever the study size: where it
    stands (``state``; ``outcome``, the end a rejected study settled on while its files are
    copied), what it declared and received, its verdict once judged, and whose it is."""

    study_id: str
    state: State
    expected: int
    received: int = 0
    manifest: bool = False
    """Whether the study declared its files' names (a plain drop did not)."""
    owner: str | None = None
    """The caller that declared the study; None for a plain drop."""
    deadline: int | None = None
    """Epoch seconds by which the study must move on (None once it is finished)."""
    largest_declared: int | None = None
    status: int | None = None
    outcome: State | None = None
    counts: StudyCounts | None = None
    """None until the study is judged."""
    chunks: int = 0
    reports: Mapping[str, int] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    keys: Mapping[str, str] = field(default_factory=dict)
    """Where the study's objects are (``prefix``, ``metadata``, the reports, ...)."""
    series: int | None = None
    last_error: LastError | None = None
    failed_from: State | None = None
    stored_as: str | None = None
    """The study id holding this study when every instance of it was stored before."""
    stored: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The item as the table keeps it, whole: what ``GET /status`` shows of the study (its
    timeline, its uploads kept aside, its previews) is a view of the item as it is
    (:func:`~pacs_validator.contract.status_view.public_view`)."""


@dataclass(frozen=True)
class PlannedFile:
    """A file of a chunk, as the judge plans its copy: where it is and the bytes it was
    judged on (version, ETag, SHA-256), its head and what describing it is estimated to
    cost, the instance it is, and whether it is its series' preview instance."""

    name: str
    key: str
    size: int
    version_id: str | None
    etag: str | None
    sha256: str | None
    head: dict[str, Any] | None
    estimated_bytes: int
    transfer_syntax: str | None
    sop_instance_uid: str | None
    series_instance_uid: str | None
    preview: bool
    version: int = 1
    """The version of its SOP instance this file is stored as: above 1 when it replaces,
    under DuplicatePolicy version, an instance stored before with other bytes."""

    def to_dict(self) -> dict[str, Any]:
        """The file as its chunk document lists it (``work/<id>/chunks/<n>.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> PlannedFile:
        """A file of a chunk document; one planned before estimates were costs 0."""
        return cls(name=str(document["name"]), key=str(document["key"]),
                   size=int(document["size"]), version_id=document.get("version_id"),
                   etag=document.get("etag"), sha256=document.get("sha256"),
                   head=document.get("head"),
                   estimated_bytes=int(document.get("estimated_bytes", 0)),
                   transfer_syntax=document.get("transfer_syntax"),
                   sop_instance_uid=document.get("sop_instance_uid"),
                   series_instance_uid=document.get("series_instance_uid"),
                   preview=bool(document.get("preview")),
                   version=int(document.get("version", 1)))
