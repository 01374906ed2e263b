"""``pacs-validator validate``: each file's verdict and each study's, as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pacs_validator.cli.common import (
    EXIT_INVALID,
    EXIT_VALID,
    collect_files,
    finding_line,
    validate_files,
)
from pacs_validator.dicom.config import load_config
from pacs_validator.dicom.study import StudyResult
from pacs_validator.dicom.validation import InstanceResult


def add_parser(commands: Any) -> None:
    validate = commands.add_parser("validate", help="validate files or folders of DICOM files")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument("--json", action="store_true", help="print the JSON report")
    validate.add_argument("--config", metavar="FILE", help="JSON configuration overrides")


def run(args: argparse.Namespace) -> int:
    """0 when every file and study is valid, 1 otherwise."""
    config = load_config(args.config)
    results, studies = validate_files(collect_files(args.paths), config)
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
