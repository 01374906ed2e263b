"""Study-level rules over the instances of one upload (or one StudyInstanceUID on disk).

These rules see only :class:`~pacs_validator.dicom.validation.InstanceResult` objects: UIDs,
digests, counts and fingerprints. So the pipeline can run them from its status table,
after the last file of a manifest arrives, without reading any file again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import tag_for_keyword

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.rules import VALID, Finding, Findings, Location, verdict_status
from pacs_validator.dicom.validation import InstanceResult, InstanceSummary, entity_attributes

STUDY_INSTANCE_UID = 0x0020000D
SOP_INSTANCE_UID = 0x00080018
MODALITY = 0x00080060
NUMBER_OF_STUDY_RELATED_INSTANCES = 0x00201208


@dataclass(frozen=True)
class Manifest:
    """What the uploader declared: the file names to expect (or only how many), and
    optionally each name's size (``sizes[i]`` of ``names[i]``)."""

    names: tuple[str, ...] = ()
    count: int | None = None
    sizes: tuple[int, ...] = ()

    @property
    def expected(self) -> int | None:
        return len(self.names) if self.names else self.count


@dataclass(frozen=True)
class StudyResult:
    """The verdict on a study: its own findings plus the worst of its instances."""

    study_instance_uid: str | None
    status: int
    findings: tuple[Finding, ...]
    instance_count: int

    @property
    def valid(self) -> bool:
        return self.status == VALID

    def to_dict(self) -> dict[str, Any]:
        """The ``studies[]`` entry of the CLI's JSON."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "valid": self.valid,
            "status": self.status,
            "instances": self.instance_count,
            "findings": [f.to_dict() for f in self.findings],
        }


def check_study(
    instances: Sequence[InstanceResult],
    config: ValidatorConfig,
    manifest: Manifest | None = None,
) -> StudyResult:
    """Run every study rule over ``instances`` (all files received for one study)."""
    findings = Findings(config.rules)
    readable = [i.summary for i in instances if i.summary.sop_instance_uid is not None]
    study_uids = sorted({s.study_instance_uid for s in readable if s.study_instance_uid})
    if len(study_uids) > 1:
        findings.add("study.mixed-studies", f"the upload holds {len(study_uids)} different "
                     "StudyInstanceUIDs", STUDY_INSTANCE_UID)
    _check_consistent(readable, config.patient_attributes, "study.patient-mismatch", findings)
    _check_consistent(readable, config.study_attributes, "study.attribute-mismatch", findings)
    _check_series_modality(readable, findings)
    _check_entities(readable, {*config.patient_attributes, *config.study_attributes}, findings)
    _check_duplicates(instances, findings)
    if manifest is not None:
        _check_manifest(instances, manifest, findings)
    _check_instance_count(readable, findings)
    return StudyResult(
        study_instance_uid=study_uids[0] if len(study_uids) == 1 else None,
        status=verdict_status(findings.items, tuple(i.status for i in instances)),
        findings=tuple(findings.items),
        instance_count=len(instances),
    )


def _check_consistent(
    summaries: Iterable[InstanceSummary], keywords: Iterable[str], rule: str, findings: Findings
) -> None:
    summaries = list(summaries)
    for keyword in keywords:
        seen = {s.fingerprints[keyword] for s in summaries if keyword in s.fingerprints}
        if len(seen) > 1:
            findings.add(rule, f"{keyword} differs between instances ({len(seen)} distinct "
                         "values)", tag_for_keyword(keyword))


ENTITY_RULES = {
    "Patient": "study.entity-patient",
    "Study": "study.entity-study",
    "Series": "study.entity-series",
    "Equipment": "study.entity-equipment",
    "Frame of Reference": "study.entity-frame-of-reference",
}


def _entity_group(summary: InstanceSummary, entity: str) -> str | None:
    """Which instances must agree on an entity's attributes: all of the study for patient
    and study, those of one series for series and equipment, those sharing a frame of
    reference for it."""
    if entity in ("Series", "Equipment"):
        return summary.series_instance_uid
    if entity == "Frame of Reference":
        return summary.frame_of_reference
    return ""


def _check_entities(summaries: Iterable[InstanceSummary], skip: Collection[str],
                    findings: Findings) -> None:
    """dcentvfy's check, on the instances' hashes: within each patient, study, series,
    equipment and frame of reference, every instance that has an attribute has the same value.
    Memory grows with series times attributes, never with instances. ``skip``: attributes the
    patient and study rules judge already."""
    entity_of = entity_attributes()
    first: dict[tuple[str, str], str] = {}
    differing: dict[str, set[str]] = defaultdict(set)
    for summary in summaries:
        for keyword, value in summary.entities.items():
            entity = entity_of.get(keyword)
            if entity is None or keyword in skip:
                continue
            group = _entity_group(summary, entity)
            if group is None:
                continue
            if first.setdefault((keyword, group), value) != value:
                differing[keyword].add(group)
    for keyword in sorted(differing):
        entity = entity_of[keyword]
        groups = len(differing[keyword])
        scope = {"Series": f"{groups} series", "Equipment": f"{groups} series",
                 "Frame of Reference": f"{groups} frame(s) of reference"}.get(entity, "the study")
        findings.add(ENTITY_RULES[entity], f"{keyword} ({entity}) differs between instances "
                     f"within {scope}", tag_for_keyword(keyword),
                     Location(path=keyword, module=entity))


def _check_series_modality(summaries: Iterable[InstanceSummary], findings: Findings) -> None:
    modalities: dict[str, set[str]] = defaultdict(set)
    for summary in summaries:
        if summary.series_instance_uid and summary.modality:
            modalities[summary.series_instance_uid].add(summary.modality)
    mixed = sum(1 for values in modalities.values() if len(values) > 1)
    if mixed:
        findings.add("study.series-modality", f"Modality differs within {mixed} series", MODALITY)


def _check_duplicates(instances: Sequence[InstanceResult], findings: Findings) -> None:
    """One finding per kind of repeat, counted: a study sent twice holds thousands of
    repeated SOPInstanceUIDs, and a finding each would grow the study item past DynamoDB's
    400 KB."""
    digests: dict[str, set[str]] = defaultdict(set)
    copies: dict[str, int] = defaultdict(int)
    for instance in instances:
        uid = instance.summary.sop_instance_uid
        if uid:
            digests[uid].add(instance.sha256)
            copies[uid] += 1
    repeated = [uid for uid, count in copies.items() if count > 1]
    identical = [uid for uid in repeated if len(digests[uid]) == 1]
    conflicting = [uid for uid in repeated if len(digests[uid]) > 1]
    for rule, uids, bytes_were in (("study.duplicate-instance", identical, "identical"),
                                   ("study.instance-conflict", conflicting, "different")):
        if uids:
            findings.add(rule, f"{len(uids)} SOPInstanceUID(s) arrived more than once with "
                         f"{bytes_were} bytes ({sum(copies[u] for u in uids)} files in all)",
                         SOP_INSTANCE_UID)


def _check_manifest(
    instances: Sequence[InstanceResult], manifest: Manifest, findings: Findings
) -> None:
    received = {i.name for i in instances}
    if manifest.names:
        missing = len(set(manifest.names) - received)
        unexpected = len(received - set(manifest.names))
    else:
        expected = manifest.count or 0
        missing = max(expected - len(received), 0)
        unexpected = max(len(received) - expected, 0)
    if missing:
        findings.add("study.manifest-missing", f"{missing} of {manifest.expected} declared "
                     "file(s) did not arrive")
    if unexpected:
        findings.add("study.manifest-unexpected", f"{unexpected} file(s) arrived that the "
                     "manifest did not declare")
    declared = dict(zip(manifest.names, manifest.sizes, strict=False))
    oversized = sum(1 for i in instances if i.size > declared.get(i.name, i.size))
    if oversized:
        findings.add("size.declared", f"{oversized} file(s) larger than the size declared "
                     "for them")


def _check_instance_count(summaries: Sequence[InstanceSummary], findings: Findings) -> None:
    distinct = len({s.sop_instance_uid for s in summaries})
    declared = {s.study_related_instances for s in summaries if s.study_related_instances}
    if any(count != distinct for count in declared):
        findings.add("study.instance-count", f"NumberOfStudyRelatedInstances disagrees with the "
                     f"{distinct} instance(s) received", NUMBER_OF_STUDY_RELATED_INSTANCES)


def group_by_study(instances: Iterable[InstanceResult]) -> dict[str | None, list[InstanceResult]]:
    """Instances keyed by StudyInstanceUID (None for files with no readable study)."""
    groups: dict[str | None, list[InstanceResult]] = defaultdict(list)
    for instance in instances:
        groups[instance.summary.study_instance_uid].append(instance)
    return dict(groups)
