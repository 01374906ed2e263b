"""Instances already stored: one SOP instance is stored once, on purpose.

The status table keeps an index of the stored SOPInstanceUIDs (each with the study id it is
stored under and the SHA-256 of its bytes), one small item per instance, so that no study
item grows with a study. When a study passes its rules, the judge looks its instances up:

- an instance stored before with the same bytes is *acknowledged*: it is not stored again,
  and a study whose every instance was acknowledged answers with the study id that holds
  them (``stored_as``);
- an instance stored before with other bytes is a conflict. :attr:`DuplicatePolicy.REFUSE`
  (the default) rejects the study with ``instance.conflict``; :attr:`DuplicatePolicy.VERSION`
  stores it under the new study id as the instance's next version, and the index then points
  there.

Google's DICOM store answers an identical re-send with success and other bytes under the
same UIDs with 409; Orthanc keeps the first unless told to overwrite; HealthImaging versions.
REFUSE answers as Google's does, VERSION as HealthImaging does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pacs_validator.contract.duplicates import DuplicatePolicy, StoredInstance
from pacs_validator.dicom.rules import Finding, Findings

if TYPE_CHECKING:
    from pacs_validator.dicom.config import ValidatorConfig

SOP_INSTANCE_UID = 0x00080018


@dataclass(frozen=True)
class Duplicates:
    """A study's instances as the index knows them: the names of the files acknowledged
    (identical to an instance stored before), the version each file to be stored as a new
    version gets, the findings that say so, and, when every instance was acknowledged, the
    study id holding them (the one holding most, when they are spread over several)."""

    acknowledged: frozenset[str] = frozenset()
    versions: Mapping[str, int] = field(default_factory=dict)
    conflicts: int = 0
    findings: tuple[Finding, ...] = ()
    stored_as: str | None = None


def instance_records(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The first file record of each SOPInstanceUID of a study (what a valid study stores)."""
    first: dict[str, dict[str, Any]] = {}
    for record in records:
        uid = record["summary"]["sop_instance_uid"]
        if uid:
            first.setdefault(uid, record)
    return first


def sort_duplicates(instances: Mapping[str, dict[str, Any]],
                    stored: Mapping[str, StoredInstance], policy: DuplicatePolicy,
                    config: ValidatorConfig) -> Duplicates:
    """Sort a valid study's instances (:func:`instance_records`) by what the index
    (``stored``, the entries found for them) says of each. The findings count instances by
    the study holding them; they name no UID."""
    acknowledged: dict[str, str] = {}
    conflicting: dict[str, str] = {}
    for uid, record in instances.items():
        earlier = stored.get(uid)
        if earlier is None:
            continue
        if record.get("sha256") and record["sha256"] == earlier.sha256:
            acknowledged[record["name"]] = earlier.study_id
        else:
            conflicting[record["name"]] = earlier.study_id
    findings = Findings(config.rules)
    for study_id, count in sorted(Counter(acknowledged.values()).items()):
        findings.add("instance.duplicate", f"{count} instance(s) identical to those stored in "
                     f"study {study_id} were acknowledged, not stored again", SOP_INSTANCE_UID)
    conflict_rule = ("instance.conflict" if policy is DuplicatePolicy.REFUSE
                     else "instance.new-version")
    for study_id, count in sorted(Counter(conflicting.values()).items()):
        findings.add(conflict_rule, f"{count} instance(s) have a SOPInstanceUID stored in "
                     f"study {study_id} with other bytes", SOP_INSTANCE_UID)
    holders = Counter(acknowledged.values()).most_common()
    whole = bool(instances) and len(acknowledged) == len(instances)
    versions = {record["name"]: stored[uid].version + 1 for uid, record in instances.items()
                if record["name"] in conflicting and policy is DuplicatePolicy.VERSION}
    return Duplicates(acknowledged=frozenset(acknowledged), versions=versions,
                      conflicts=len(conflicting), findings=tuple(findings.items),
                      stored_as=holders[0][0] if whole else None)
