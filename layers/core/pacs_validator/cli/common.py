"""What the subcommands share: exit codes, the files a user names, one verdict per file and
per study, a finding on one line, and the API a client command talks to."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from pacs_validator.cli.client import PacsClient
from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.rules import Finding
from pacs_validator.dicom.study import StudyResult, check_study, group_by_study
from pacs_validator.dicom.validation import InstanceResult, validate_instance

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


def finding_line(finding: Finding) -> str:
    """A finding on one line for people: severity, rule, tag (when there is one), message."""
    tag = f"{finding.tag:11} " if finding.tag else ""
    return f"{finding.severity.value:7} {finding.rule:28} {tag}{finding.message}"


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """``--api`` and ``--json``, for the commands that talk to the deployed API."""
    parser.add_argument("--api", metavar="URL",
                        help="the API's base URL (default: $PACS_VALIDATOR_API)")
    parser.add_argument("--json", action="store_true", help="print the status documents")


def api_client(args: argparse.Namespace) -> PacsClient:
    """The client of the API that ``--api`` or ``$PACS_VALIDATOR_API`` names, with the
    bearer token of ``$PACS_VALIDATOR_TOKEN`` when it is set; a URL the token may not be
    sent to (plain http to another machine) is a usage error."""
    api = args.api or os.environ.get("PACS_VALIDATOR_API")
    if not api:
        raise UsageError("no API: give --api URL or set PACS_VALIDATOR_API")
    try:
        return PacsClient(api, jobs=getattr(args, "jobs", 8),
                          token=os.environ.get("PACS_VALIDATOR_TOKEN") or None)
    except ValueError as error:
        raise UsageError(str(error)) from None
