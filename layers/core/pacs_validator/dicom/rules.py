"""The rule catalogue, findings and verdicts.

Every check the validator makes is a *rule* with a stable id (``format.truncated``,
``attribute.required`` ...). The catalogue lives in ``data/rules.json`` so that severities,
statuses and on/off switches are data that a config file can override, never code. A check
reports a :class:`Finding`; the verdict of a file or study is derived from its findings alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from functools import cache
from typing import Any

from pydicom.datadict import keyword_for_tag

from pacs_validator.dicom.data import data_document


class Severity(str, Enum):
    """How much a finding counts: only errors make a file or study invalid."""

    ERROR = "error"
    WARNING = "warning"


VALID = 200
"""Status of a file or study with no error finding."""
NOT_DICOM = 400
"""Status of a file that does not read as DICOM Part 10."""
OVER_A_CAP = 413
"""Status of a file over a size or count cap: it was not read whole."""

STATUS_PRECEDENCE = (413, 400, 503, 500, 422)
"""When several statuses apply, the first of these wins: an oversized file was never read,
an unreadable one cannot have its content judged."""


@dataclass(frozen=True)
class Rule:
    """One entry of the catalogue, after configuration is applied."""

    id: str
    severity: Severity
    status: int
    title: str
    enabled: bool = True


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a file or study.

    ``message`` names attributes and says what is wrong with them; it never contains an
    attribute's value, so findings can go into logs and events without leaking PHI.
    """

    rule: str
    severity: Severity
    status: int
    message: str
    tag: str | None = None
    keyword: str | None = None
    path: str | None = None
    """Where in the data set, through sequence items: ``ProcedureCodeSequence[1]/CodeMeaning``."""
    module: str | None = None
    iod: str | None = None
    detail: str | None = None
    """The conformance engine's own message, verbatim. It may quote a value, so it goes to the
    study's reports and its owner's status answer, never to logs or events."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by the CLI, the status API and validation logs; the location
        fields only when set, so the findings of the other rules stay as small as before."""
        data = {key: value for key, value in asdict(self).items()
                if value is not None or key not in LOCATION_FIELDS}
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        severity, status = Severity(data["severity"]), int(data["status"])
        return cls(**{**data, "severity": severity, "status": status})


LOCATION_FIELDS = ("path", "module", "iod", "detail")


def format_tag(tag: int) -> str:
    """``0x00100020`` -> ``"(0010,0020)"``, the way DICOM people write tags."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def element_name(tag: int) -> str:
    """How a message or a path names an element: its keyword, else (private) its tag."""
    return keyword_for_tag(tag) or format_tag(tag)


@cache
def _catalogue() -> dict[str, dict[str, Any]]:
    catalogue: dict[str, dict[str, Any]] = data_document("rules.json")
    return catalogue


def rule_ids() -> tuple[str, ...]:
    """Every rule id the validator knows, in catalogue order."""
    return tuple(_catalogue())


@dataclass(frozen=True)
class Location:
    """Where a conformance finding is and what its engine said (see :class:`Finding`)."""

    path: str | None = None
    module: str | None = None
    iod: str | None = None
    detail: str | None = None
    at_most: Severity | None = None
    """The engine's own severity: a warning of the engine never rejects, whatever the profile."""


class RuleBook:
    """The catalogue with a configuration's overrides applied; it turns checks into findings."""

    def __init__(self, overrides: dict[str, dict[str, Any]] | None = None) -> None:
        overrides = overrides or {}
        unknown = sorted(set(overrides) - set(_catalogue()))
        if unknown:
            raise ValueError(f"unknown rule id(s) in configuration: {', '.join(unknown)}")
        self._rules: dict[str, Rule] = {}
        for rule_id, entry in _catalogue().items():
            merged = {**entry, **overrides.get(rule_id, {})}
            self._rules[rule_id] = Rule(
                id=rule_id,
                severity=Severity(merged["severity"]),
                status=int(merged["status"]),
                title=str(merged["title"]),
                enabled=bool(merged.get("enabled", True)),
            )

    def __getitem__(self, rule_id: str) -> Rule:
        return self._rules[rule_id]

    def enabled(self, rule_id: str) -> bool:
        return self._rules[rule_id].enabled

    def finding(self, rule_id: str, message: str, tag: int | None = None,
                location: Location | None = None) -> Finding:
        """The finding ``rule_id`` reports, with the configured severity and status; a
        ``location`` caps the severity at what its engine said."""
        rule = self._rules[rule_id]
        location = location or Location()
        severity = rule.severity
        if location.at_most is Severity.WARNING:
            severity = Severity.WARNING
        return Finding(
            rule=rule_id,
            severity=severity,
            status=rule.status,
            message=message,
            tag=format_tag(tag) if tag is not None else None,
            keyword=(keyword_for_tag(tag) or None) if tag is not None else None,
            path=location.path,
            module=location.module,
            iod=location.iod,
            detail=location.detail,
        )


class Findings:
    """Collects the findings of one file or study, dropping rules the configuration disabled."""

    def __init__(self, rules: RuleBook) -> None:
        self.rules = rules
        self.items: list[Finding] = []

    def add(self, rule_id: str, message: str, tag: int | None = None,
            location: Location | None = None) -> None:
        if self.rules.enabled(rule_id):
            self.items.append(self.rules.finding(rule_id, message, tag, location))

    def has_errors(self) -> bool:
        return any(f.severity is Severity.ERROR for f in self.items)

    @contextmanager
    def last_resort(self) -> Iterator[None]:
        """Turn any exception escaping the block into an ``internal.error`` finding (500).

        One file must never take a batch or a study down: a check that fails on bytes
        nobody foresaw answers for that file alone. The message names the exception type,
        never its text, which may quote a value of the file.
        """
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the guard exists to catch what others miss
            self.items.append(self.rules.finding(
                "internal.error", f"validation failed with {type(exc).__name__}"
            ))


def verdict_status(findings: list[Finding], extra_statuses: tuple[int, ...] = ()) -> int:
    """200 when no finding is an error, else the status of highest precedence.

    ``extra_statuses`` lets a study fold in the statuses of its instances.
    """
    statuses = {f.status for f in findings if f.severity is Severity.ERROR}
    statuses.update(s for s in extra_statuses if s != VALID)
    for status in STATUS_PRECEDENCE:
        if status in statuses:
            return status
    return min(statuses) if statuses else VALID
