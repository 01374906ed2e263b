"""``pacs-validator status``: one study's verdict from the deployed API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from pacs_validator.cli.client import TRANSIENT_ERRORS, ApiError
from pacs_validator.cli.common import (
    EXIT_INVALID,
    EXIT_USAGE,
    EXIT_VALID,
    add_api_arguments,
    api_client,
    print_api_error,
)
from pacs_validator.cli.report import print_findings, print_warning_counts
from pacs_validator.contract.states import State
from pacs_validator.dicom.rules import Finding


def add_parser(commands: Any) -> None:
    status = commands.add_parser("status", help="print one study's status from the API")
    status.add_argument("study_id", metavar="STUDY_ID")
    status.add_argument("-v", "--verbose", action="store_true",
                        help="list every finding, warnings included")
    add_api_arguments(status)


def run(args: argparse.Namespace) -> int:
    """``pacs-validator status STUDY_ID``: 0 when STORED, 1 otherwise (an unknown study
    included), 2 on usage."""
    client = api_client(args)
    try:
        document = client.full_status(args.study_id)
    except ApiError as exc:
        print_api_error(exc, sys.stderr)
        return EXIT_USAGE if exc.status == 400 else EXIT_INVALID
    except TRANSIENT_ERRORS as exc:
        print(f"pacs-validator: the API cannot be reached: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_status(document, sys.stdout, verbose=args.verbose)
    return EXIT_VALID if document["state"] == State.STORED else EXIT_INVALID


def print_status(document: dict[str, Any], out: TextIO, *, verbose: bool = False) -> None:
    """A study's verdict, the errors of the study and of each file that has some, and the
    warnings counted by rule (listed one by one, under their file, when ``verbose``)."""
    counts = document["counts"]
    print(f"{document['state']:10} {document['status'] or '-'} {document['study_id']} "
          f"({counts.get('received', 0)}/{counts.get('declared')} file(s) received)", file=out)
    if document.get("stored_as"):
        print(f"    stored already as study {document['stored_as']}: every instance was "
              "stored before, identical, and nothing was stored again", file=out)
    study_findings = [Finding.from_dict(f) for f in document["findings"]]
    print_findings(study_findings, out, verbose=verbose, label="study: ")
    warnings = list(study_findings)
    for entry in document["files"]:
        findings = [Finding.from_dict(f) for f in entry["findings"]]
        print_findings(findings, out, verbose=verbose, label=f"{entry['name']}: ")
        warnings.extend(findings)
        if entry.get("findings_omitted"):
            print(f"    {entry['name']}: {entry['findings_omitted']} more finding(s) in "
                  f"validation.json", file=out)
    if not verbose:
        print_warning_counts(warnings, out)
    for name, key in sorted(document.get("keys", {}).items()):
        print(f"    {name}: {key}", file=out)
