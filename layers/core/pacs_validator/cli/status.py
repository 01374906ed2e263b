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
    finding_line,
)
from pacs_validator.contract.states import State
from pacs_validator.dicom.rules import Finding


def add_parser(commands: Any) -> None:
    status = commands.add_parser("status", help="print one study's status from the API")
    status.add_argument("study_id", metavar="STUDY_ID")
    add_api_arguments(status)


def run(args: argparse.Namespace) -> int:
    """``pacs-validator status STUDY_ID``: 0 when STORED, 1 otherwise, 2 on usage."""
    client = api_client(args)
    try:
        document = client.full_status(args.study_id)
    except ApiError as exc:
        print(f"pacs-validator: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.status in (400, 404) else EXIT_INVALID
    except TRANSIENT_ERRORS as exc:
        print(f"pacs-validator: the API cannot be reached: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_status(document, sys.stdout)
    return EXIT_VALID if document["state"] == State.STORED else EXIT_INVALID


def print_status(document: dict[str, Any], out: TextIO) -> None:
    """A study's verdict, its findings and those of each file that has some."""
    counts = document["counts"]
    print(f"{document['state']:10} {document['status'] or '-'} {document['study_id']} "
          f"({counts.get('received', 0)}/{counts.get('declared')} file(s) received)", file=out)
    for finding in document["findings"]:
        print(f"    study: {finding_line(Finding.from_dict(finding))}", file=out)
    for entry in document["files"]:
        for finding in entry["findings"]:
            print(f"    {entry['name']}: {finding_line(Finding.from_dict(finding))}", file=out)
        if entry.get("findings_omitted"):
            print(f"    {entry['name']}: {entry['findings_omitted']} more finding(s) in "
                  f"validation.json", file=out)
    for name, key in sorted(document.get("keys", {}).items()):
        print(f"    {name}: {key}", file=out)
