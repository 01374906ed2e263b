"""A judged study's reports, written piece by piece so that no study size holds them whole:
``validation.json`` (the CLI's report shape for one study) and ``validation.log``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pacs_validator.dicom.study import StudyResult
from pacs_validator.dicom.validation import InstanceResult


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
