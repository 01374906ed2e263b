"""``pacs-validator status``: one study's verdict from the deployed API, the study named by
its id or by its StudyInstanceUID (found through ``GET /studies``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from pacs_validator.cli.common import (
    EXIT_INVALID,
    EXIT_VALID,
    add_api_arguments,
    api_client,
    print_hint,
    report_api_failure,
)
from pacs_validator.cli.listing import print_studies
from pacs_validator.cli.report import print_findings, print_warning_counts
from pacs_validator.contract.keys import is_study_id
from pacs_validator.contract.states import State
from pacs_validator.contract.study_list import is_dicom_uid
from pacs_validator.dicom.rules import Finding
from pacs_validator.transfer.client import TRANSIENT_ERRORS, ApiError, PacsClient


def add_parser(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="print one study's status from the API",
        description="One study's status: give the STUDY_ID upload printed, or the study's "
                    "StudyInstanceUID (found among your studies once they are judged).")
    status.add_argument("study_id", metavar="STUDY_ID",
                        help="a study id (32 hex digits), or a StudyInstanceUID")
    status.add_argument("-v", "--verbose", action="store_true",
                        help="list every finding, warnings included")
    add_api_arguments(status)


def run(args: argparse.Namespace) -> int:
    """``pacs-validator status STUDY_ID``: 0 when STORED, 1 otherwise (an unknown study
    included, and a UID of no study or of several, which are listed), 2 on usage."""
    client = api_client(args)
    try:
        study_id = args.study_id
        if not is_study_id(study_id) and is_dicom_uid(study_id):
            found = study_of_uid(client, study_id)
            if found is None:
                return EXIT_INVALID
            study_id = found
        document = client.full_status(study_id)
    except (ApiError, *TRANSIENT_ERRORS) as exc:
        return report_api_failure(exc)
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


UIDS_LISTED = 20
"""The studies of one StudyInstanceUID listed, at most, when it names several."""


def study_of_uid(client: PacsClient, uid: str) -> str | None:
    """The id of the one study of the caller's listed by ``uid``; None, said on stderr, when
    none is (with a hint) or several are (listed on stdout, to pick one's id from)."""
    studies, more = client.list_studies(UIDS_LISTED, study_instance_uid=uid)
    if len(studies) == 1:
        return str(studies[0]["study_id"])
    if not studies:
        print(f"pacs-validator: no study of yours has the StudyInstanceUID {uid}",
              file=sys.stderr)
        print_hint("a study is found by its StudyInstanceUID once it is judged; before, give "
                   "the STUDY_ID that upload printed (pacs-validator list shows them)",
                   sys.stderr)
        return None
    print_studies(studies, sys.stdout, more=more)
    print(f"pacs-validator: several studies have the StudyInstanceUID {uid}",
          file=sys.stderr)
    print_hint("give the STUDY_ID of the one you mean", sys.stderr)
    return None
