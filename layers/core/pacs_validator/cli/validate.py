"""``pacs-validator validate``: each file's verdict and each study's, as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from itertools import chain
from typing import Any, TextIO

from pacs_validator.cli.common import (
    EXIT_INVALID,
    EXIT_VALID,
    Skipped,
    Validation,
    collect_inputs,
    print_skipped,
    validate_paths,
)
from pacs_validator.cli.progress import file_count
from pacs_validator.cli.report import print_findings, print_warning_counts, totals_line
from pacs_validator.dicom.config import load_config
from pacs_validator.dicom.study import StudyResult
from pacs_validator.dicom.validation import InstanceResult


def add_parser(commands: Any) -> None:
    validate = commands.add_parser(
        "validate", help="validate files or folders of DICOM files",
        description="Judge each file and each study the files form. Prints each file's "
                    "verdict and errors, each study's warnings counted by rule, and totals; "
                    "-v lists every finding, --json prints the whole report.")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument("--json", action="store_true", help="print the JSON report")
    validate.add_argument("-v", "--verbose", action="store_true",
                          help="list every finding, warnings included (identical ones once, "
                               "with their count)")
    validate.add_argument("--config", metavar="FILE", help="JSON configuration overrides")


def run(args: argparse.Namespace) -> int:
    """0 when every file and study is valid, 1 otherwise (and when no file was judged)."""
    config = load_config(args.config)
    files, skipped = collect_inputs(args.paths, config.limits)
    if args.json:
        with file_count(sys.stderr, len(files), "validating") as count:
            validation = validate_paths(files, config, lambda result: count.advance())
        print(json.dumps(json_report(validation, skipped), indent=2))
    else:
        with file_count(sys.stdout, len(files), "validating") as count:
            print_skipped(skipped, count.out)

            def judged(result: InstanceResult) -> None:
                print_file(result, count.out, verbose=args.verbose)
                count.advance()

            validation = validate_paths(files, config, judged)
        print_studies(validation, skipped, sys.stdout, verbose=args.verbose)
    results, studies = validation.results, validation.studies
    all_valid = all(r.valid for r in results) and all(s.valid for s in studies)
    return EXIT_VALID if results and all_valid else EXIT_INVALID


def json_report(validation: Validation, skipped: Sequence[Skipped]) -> dict[str, Any]:
    """The validation report: each file names its study, and the files passed over why."""
    return {
        "files": [
            {**r.to_dict(), "study_instance_uid": r.summary.study_instance_uid}
            for r in validation.results
        ],
        "studies": [s.to_dict() for s in validation.studies],
        "skipped": [entry.to_dict() for entry in skipped],
    }


def print_file(result: InstanceResult, out: TextIO, *, verbose: bool) -> None:
    """A file's verdict and its errors; its warnings are counted by rule under its study
    (listed, with ``verbose``, under the file). A file with no study has its every finding
    listed: there is no study to count them under."""
    print(f"{'VALID  ' if result.valid else 'INVALID'} {result.status} {result.name}",
          file=out)
    no_study = result.summary.study_instance_uid is None
    print_findings(result.findings, out, verbose=verbose or no_study)


def print_studies(validation: Validation, skipped: Sequence[Skipped], out: TextIO, *,
                  verbose: bool = False) -> None:
    """Each study's verdict, findings and counted warnings, then the totals."""
    for study in validation.studies:
        _print_study(study, validation, out, verbose=verbose)
    print(_totals(validation, skipped), file=out)


def _print_study(study: StudyResult, validation: Validation, out: TextIO, *,
                 verbose: bool) -> None:
    verdict = "VALID  " if study.valid else "INVALID"
    label = validation.labels.get(study.study_instance_uid or "")
    print(f"study {verdict} {study.status} {study.study_instance_uid} "
          f"({study.instance_count} instance(s))" + (f" {label.text()}" if label else ""),
          file=out)
    print_findings(study.findings, out, verbose=verbose)
    if not verbose:
        members = (f for r in validation.results
                   if r.summary.study_instance_uid == study.study_instance_uid
                   for f in r.findings)
        print_warning_counts(chain(study.findings, members), out)


def _totals(validation: Validation, skipped: Sequence[Skipped]) -> str:
    valid_files = sum(r.valid for r in validation.results)
    valid_studies = sum(s.valid for s in validation.studies)
    return totals_line(valid_files, len(validation.results) - valid_files, len(skipped),
                       valid_studies, len(validation.studies) - valid_studies)
