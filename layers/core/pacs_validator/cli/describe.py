"""``pacs-validator describe``: the ``metadata.json`` document the pipeline would store for
the studies at the paths given, with their DICOM JSON and series previews on request."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from pacs_validator.cli.common import (
    EXIT_INVALID,
    EXIT_USAGE,
    EXIT_VALID,
    collect_files,
    finding_line,
)
from pacs_validator.cli.progress import FileCount, file_count
from pacs_validator.contract.names import safe_name
from pacs_validator.dicom.config import ValidatorConfig, build_config
from pacs_validator.dicom.description import DescribedInstance, build_metadata, dicom_json
from pacs_validator.dicom.metadata import middle_instance
from pacs_validator.dicom.validation import validate_file


def add_parser(commands: Any) -> None:
    describe = commands.add_parser("describe", help="print the metadata.json of a study")
    describe.add_argument("paths", nargs="+", metavar="PATH")
    describe.add_argument("--json", action="store_true", help="print the JSON document")
    describe.add_argument("--dicom-json", metavar="FILE",
                          help="also write the instances' DICOM JSON (PS3.18 F.2) to FILE")
    describe.add_argument("--previews", metavar="DIR",
                          help="also write a PNG preview of each series to "
                               "DIR/<SeriesInstanceUID>.png (needs the previews extra)")


def run(args: argparse.Namespace) -> int:
    """0 when at least one study was described, 1 when none was, 2 when previews were asked
    for and cannot be drawn."""
    config = build_config()
    files = collect_files(args.paths)
    sidecars: list[dict[str, Any]] | None = [] if args.dicom_json else None
    with file_count(sys.stderr, len(files), "describing") as count:
        documents = list(_describe_files(files, config, count, sidecars))
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


def _describe_files(
    files: Sequence[Path], config: ValidatorConfig, count: FileCount,
    sidecars: list[dict[str, Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """The metadata document of each study, each file read counted (files left out are
    noted on the count's stream); with ``sidecars``, also the DICOM JSON of each instance
    (made while its file is open), BulkDataURIs pointing at the file."""
    described: dict[str, list[DescribedInstance]] = {}
    for path in files:
        result, parsed = validate_file(path, config, name=str(path))
        instance = DescribedInstance.of(result, parsed, key=str(path))
        study_uid = result.summary.study_instance_uid
        count.advance()
        if instance is None or study_uid is None:
            print(f"skipped (unreadable, status {result.status}): {path}", file=count.out)
            continue
        described.setdefault(study_uid, []).append(instance)
        if sidecars is not None:
            sidecars.append(dicom_json(instance, bulk_data_uri=path.resolve().as_uri()))
    for study_uid, instances in described.items():
        yield build_metadata(study_uid, instances)


def _write_previews(document: dict[str, Any], folder: Path, config: ValidatorConfig) -> None:
    """Render each series' middle instance to ``folder/<SeriesInstanceUID>.png`` and record
    the path as the series' ``preview`` (findings of series with none go to stderr)."""
    from pacs_validator.dicom.previews import render_preview  # numpy and Pillow: previews extra

    folder.mkdir(parents=True, exist_ok=True)
    for series in document["series"]:
        if not series["instance_uid"]:
            continue
        preview = render_preview(middle_instance(series)["key"], config.rules,
                                 limits=config.limits)
        for finding in preview.findings:
            print(f"    series {series['number']}: {finding_line(finding)}", file=sys.stderr)
        if preview.png is not None:
            path = folder / f"{safe_name(series['instance_uid'])}.png"
            path.write_bytes(preview.png)
            series["preview"] = str(path)


def _print_summary(document: dict[str, Any], out: TextIO) -> None:
    study = document["study"]
    print(f"study {document['study_id']}: {study['description'] or '(no description)'}, "
          f"date {study['date'] or '(no date)'}, {document['counts']['series']} series, "
          f"{document['counts']['instances']} instance(s)", file=out)
    for series in document["series"]:
        print(f"  series {series['number']} {series['modality']}: "
              f"{len(series['instances'])} instance(s)", file=out)
