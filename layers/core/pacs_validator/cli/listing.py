"""``pacs-validator list``: the caller's studies at the deployed API, newest first, one line
each, by the ids people know them by (our study id and their StudyInstanceUID)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from pacs_validator.cli.common import (
    EXIT_VALID,
    add_api_arguments,
    api_client,
    report_api_failure,
)
from pacs_validator.cli.report import counted
from pacs_validator.transfer.client import TRANSIENT_ERRORS, ApiError

LISTED_BY_DEFAULT = 50


def add_parser(commands: Any) -> None:
    listing = commands.add_parser(
        "list", help="list your studies at the API, newest first",
        description="One line per study you declared, newest first (an admin's: every "
                    "owner's): study id, StudyInstanceUID (once judged), state, verdict, "
                    "when it was declared and its files received of those declared.")
    listing.add_argument("--limit", type=positive, default=LISTED_BY_DEFAULT, metavar="N",
                         help=f"list at most N studies (default {LISTED_BY_DEFAULT})")
    add_api_arguments(listing, json_help="print the studies listed as one JSON document")


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    """``pacs-validator list``: 0 once listed, 1 when the API refuses or cannot be reached,
    2 on usage."""
    client = api_client(args)
    try:
        studies, more = client.list_studies(args.limit)
    except (ApiError, *TRANSIENT_ERRORS) as exc:
        return report_api_failure(exc)
    if args.json:
        print(json.dumps({"studies": studies, "more": more}, indent=2))
    else:
        print_studies(studies, sys.stdout, more=more)
    return EXIT_VALID


def study_line(entry: dict[str, Any]) -> str:
    """``<study id> <StudyInstanceUID> <state> <status> <declared, UTC> <files>``; ``-`` for
    what the study does not have yet (a UID before it is judged, a verdict)."""
    declared = datetime.fromtimestamp(entry["created_at"], timezone.utc).strftime("%Y-%m-%d %H:%M")
    counts = entry["counts"]
    mixed = (f" (+{entry['study_instance_uids'] - 1} other UID(s))"
             if entry.get("study_instance_uids", 0) > 1 else "")
    return (f"{entry['study_id']} {entry['study_instance_uid'] or '-'}{mixed} "
            f"{entry['state']:10} {entry['status'] or '-'} {declared} "
            f"{counts.get('received', 0)}/{counts.get('declared')} file(s)")


def totals_line(studies: Sequence[dict[str, Any]]) -> str:
    """``3 studies: 2 STORED, 1 REJECTED``: how many in each state, the most first."""
    states = Counter(entry["state"] for entry in studies)
    by_count = sorted(states.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{count} {state}" for state, count in by_count)
    return f"{counted(len(studies), 'study', 'studies')}" + (f": {shown}" if shown else "")


def print_studies(studies: Sequence[dict[str, Any]], out: TextIO, *, more: bool = False) -> None:
    """One line per study, then the totals (and, when the API has more, how to see them)."""
    for entry in studies:
        print(study_line(entry), file=out)
    print(totals_line(studies) + (" (more: raise --limit)" if more else ""), file=out)
