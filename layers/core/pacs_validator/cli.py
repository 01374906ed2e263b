"""``pacs-validator``: the validation core on the command line, no AWS needed.

``validate`` judges files and the studies they form (grouped by StudyInstanceUID);
``describe`` prints the ``metadata.json`` document the pipeline would store (``--previews``
also renders a PNG per series); ``upload`` and ``status`` talk to the deployed API
(:mod:`pacs_validator.upload`).
Exit codes: 0 all valid, 1 something invalid, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from pacs_validator.config import ConfigError, ValidatorConfig, load_config
from pacs_validator.metadata import (
    DescribedInstance,
    build_metadata,
    dicom_json,
    middle_instance,
)
from pacs_validator.names import safe_name
from pacs_validator.rules import Finding
from pacs_validator.study import StudyResult, check_study, group_by_study
from pacs_validator.validation import InstanceResult, validate_instance

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A path or option the user gave cannot be used."""


def collect_files(paths: Sequence[str]) -> list[Path]:
    """Files named directly, and every file below named folders (hidden ones skipped)."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path)))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"no such file or folder: {name}")
    if not files:
        raise UsageError("no files to read")
    return files


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def validate_files(
    files: Sequence[Path], config: ValidatorConfig
) -> tuple[list[InstanceResult], list[StudyResult]]:
    """Every file's verdict, then every study's (files with no readable study have none)."""
    results = [validate_instance(path, config, name=str(path))[0] for path in files]
    studies = [
        check_study(members, config)
        for uid, members in group_by_study(results).items()
        if uid is not None
    ]
    return results, studies


def _describe_files(
    files: Sequence[Path], config: ValidatorConfig, sidecars: list[dict[str, Any]] | None = None
) -> Iterator[dict[str, Any]]:
    """The metadata document of each study; with ``sidecars``, also the DICOM JSON of each
    instance (made while its file is open), BulkDataURIs pointing at the file."""
    described: dict[str, list[DescribedInstance]] = {}
    for path in files:
        result, parsed = validate_instance(path, config, name=str(path))
        instance = DescribedInstance.of(result, parsed, key=str(path))
        study_uid = result.summary.study_instance_uid
        if instance is None or study_uid is None:
            print(f"skipped (unreadable, status {result.status}): {path}", file=sys.stderr)
            continue
        described.setdefault(study_uid, []).append(instance)
        if sidecars is not None:
            sidecars.append(dicom_json(instance, bulk_data_uri=path.resolve().as_uri()))
    for study_uid, instances in described.items():
        yield build_metadata(study_uid, instances)


def _write_previews(document: dict[str, Any], folder: Path, config: ValidatorConfig) -> None:
    """Render each series' middle instance to ``folder/<SeriesInstanceUID>.png`` and record
    the path as the series' ``preview`` (findings of series with none go to stderr)."""
    from pacs_validator.previews import render_preview  # numpy and Pillow: previews extra

    folder.mkdir(parents=True, exist_ok=True)
    for series in document["series"]:
        if not series["instance_uid"]:
            continue
        preview = render_preview(middle_instance(series)["key"], config.rules)
        for finding in preview.findings:
            print(f"    series {series['number']}: {finding_line(finding)}", file=sys.stderr)
        if preview.png is not None:
            path = folder / f"{safe_name(series['instance_uid'])}.png"
            path.write_bytes(preview.png)
            series["preview"] = str(path)


def finding_line(finding: Finding) -> str:
    """A finding on one line for people: severity, rule, tag (when there is one), message."""
    tag = f"{finding.tag:11} " if finding.tag else ""
    return f"{finding.severity.value:7} {finding.rule:28} {tag}{finding.message}"


def _print_validation(
    results: Sequence[InstanceResult], studies: Sequence[StudyResult], out: TextIO
) -> None:
    for result in results:
        print(f"{'VALID  ' if result.valid else 'INVALID'} {result.status} {result.name}", file=out)
        for finding in result.findings:
            print(f"    {finding_line(finding)}", file=out)
    for study in studies:
        verdict = "VALID  " if study.valid else "INVALID"
        print(f"study {verdict} {study.status} {study.study_instance_uid} "
              f"({study.instance_count} instance(s))", file=out)
        for finding in study.findings:
            print(f"    {finding_line(finding)}", file=out)


def _print_summary(document: dict[str, Any], out: TextIO) -> None:
    study = document["study"]
    print(f"study {document['study_id']}: {study['description'] or '(no description)'}, "
          f"date {study['date']}, {document['counts']['series']} series, "
          f"{document['counts']['instances']} instance(s)", file=out)
    for series in document["series"]:
        print(f"  series {series['number']} {series['modality']}: "
              f"{len(series['instances'])} instance(s)", file=out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacs-validator", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="validate files or folders of DICOM files")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument("--json", action="store_true", help="print the JSON report")
    validate.add_argument("--config", metavar="FILE", help="JSON configuration overrides")
    describe = commands.add_parser("describe", help="print the metadata.json of a study")
    describe.add_argument("paths", nargs="+", metavar="PATH")
    describe.add_argument("--json", action="store_true", help="print the JSON document")
    describe.add_argument("--dicom-json", metavar="FILE",
                          help="also write the instances' DICOM JSON (PS3.18 F.2) to FILE")
    describe.add_argument("--previews", metavar="DIR",
                          help="also write a PNG preview of each series to "
                               "DIR/<SeriesInstanceUID>.png (needs the previews extra)")
    from pacs_validator.upload import add_arguments

    add_arguments(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("upload", "status"):
        from pacs_validator import upload

        return upload.upload_main(args) if args.command == "upload" else upload.status_main(args)
    try:
        config = load_config(getattr(args, "config", None))
        files = collect_files(args.paths)
    except (ConfigError, UsageError) as exc:
        print(f"pacs-validator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "describe":
        sidecars: list[dict[str, Any]] | None = [] if args.dicom_json else None
        documents = list(_describe_files(files, config, sidecars))
        if args.previews:
            try:
                for document in documents:
                    _write_previews(document, Path(args.previews), config)
            except ImportError:
                print("pacs-validator: previews need the previews extra: "
                      "pip install 'pacs-validator[previews]'", file=sys.stderr)
                return EXIT_USAGE
        if args.dicom_json:
            Path(args.dicom_json).write_text(json.dumps(sidecars, indent=1), "utf-8")
        if args.json:
            payload: Any = documents[0] if len(documents) == 1 else documents
            print(json.dumps(payload, indent=2, ensure_ascii=False))
        else:
            for document in documents:
                _print_summary(document, sys.stdout)
        return EXIT_VALID if documents else EXIT_INVALID
    results, studies = validate_files(files, config)
    if args.json:
        report = {
            "files": [r.to_dict() for r in results],
            "studies": [s.to_dict() for s in studies],
        }
        print(json.dumps(report, indent=2))
    else:
        _print_validation(results, studies, sys.stdout)
    all_valid = all(r.valid for r in results) and all(s.valid for s in studies)
    return EXIT_VALID if all_valid else EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
