"""What the subcommands share: exit codes, the files a user names, one verdict per file and
per study, a finding on one line, and the API a client command talks to."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import TextIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pacs_validator.dicom.config import ValidatorConfig, build_config
from pacs_validator.dicom.limits import Limits
from pacs_validator.dicom.rules import Finding
from pacs_validator.dicom.study import StudyResult, check_study, group_by_study
from pacs_validator.dicom.validation import (
    InstanceResult,
    is_media_directory,
    is_text_file,
    validate_file,
)
from pacs_validator.transfer.client import ApiError, PacsClient

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141
"""What a shell reports for a command SIGPIPE ended (128 + 13): the reader went away."""


class UsageError(Exception):
    """A path or option the user gave cannot be used."""


@dataclass(frozen=True)
class Skipped:
    """A file a command passes over, and why (said to the user, never judged)."""

    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


NOT_REGULAR = "not a regular file (a pipe, device, socket or broken link): not read"
MEDIA_DIRECTORY = "a DICOMDIR (the index of a file set, not an instance): not judged"
TEXT_FILE = "a text file, not DICOM: not judged"


def collect_inputs(paths: Sequence[str], limits: Limits) -> tuple[list[Path], list[Skipped]]:
    """The files to read, named directly or below named folders (hidden ones left out),
    and those passed over: what is not a regular file (opening a pipe would wait for a
    writer forever) and DICOMDIRs. A folder is walked whatever its name ends with."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if not _hidden(p, path) and not p.is_dir())
        elif path.exists() or path.is_symlink():
            found = [path]
        else:
            raise UsageError(f"no such file or folder: {name}")
        for candidate in found:
            reason = _skip_reason(candidate, limits, walked=path.is_dir())
            if reason is None:
                files.append(candidate)
            else:
                skipped.append(Skipped(candidate, reason))
    if not files and not skipped:
        raise UsageError("no files to read")
    return files, skipped


def _skip_reason(path: Path, limits: Limits, walked: bool) -> str | None:
    """Why ``path`` is passed over, or None. A text file found in a folder (a README or an
    index page beside a CD's instances) is passed over too; one named on its own is
    judged, whatever it holds, and so is any binary file (it may be DICOM, if broken)."""
    if not path.is_file():
        return NOT_REGULAR
    if is_media_directory(path, limits):
        return MEDIA_DIRECTORY
    if walked and is_text_file(path):
        return TEXT_FILE
    return None


def collect_files(paths: Sequence[str]) -> list[Path]:
    """The files to read (see :func:`collect_inputs`), those passed over noted on stderr;
    a usage error when nothing is left to read."""
    files, skipped = collect_inputs(paths, build_config().limits)
    print_skipped(skipped, sys.stderr)
    if not files:
        raise UsageError("no files to read")
    return files


def print_skipped(skipped: Sequence[Skipped], out: TextIO) -> None:
    for entry in skipped:
        print(f"SKIPPED {entry.path}: {entry.reason}", file=out)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


@dataclass(frozen=True)
class StudyLabel:
    """What people know a study by, beside its UID: the folder its files share and its
    StudyDescription and StudyDate. Values of the files: for the user's terminal only,
    never for logs or events."""

    folder: str
    description: str | None = None
    date: str | None = None

    def text(self) -> str:
        parts = [f"in {self.folder}"]
        if self.description:
            parts.append(f'"{self.description}"')
        if self.date:
            parts.append(self.date)
        return ", ".join(parts)


@dataclass(frozen=True)
class Validation:
    """A run's verdicts: every file's, every study's, and each study's label by UID."""

    results: list[InstanceResult]
    studies: list[StudyResult]
    labels: dict[str, StudyLabel] = field(default_factory=dict)


def validate_paths(files: Sequence[Path], config: ValidatorConfig,
                   judged: Callable[[InstanceResult], None] = lambda result: None
                   ) -> Validation:
    """Every file's verdict, then every study's (files with no readable study have none),
    with the labels the studies' files give them (their few values taken as each file is
    read: no data set is kept). ``judged`` is told each file's verdict as it is known, for
    it to be shown as it comes."""
    results: list[InstanceResult] = []
    seen: dict[str, list[_Seen]] = {}
    for path in files:
        result, parsed = validate_file(path, config, name=str(path))
        results.append(result)
        judged(result)
        uid = result.summary.study_instance_uid
        if uid is not None and parsed.dataset is not None:
            seen.setdefault(uid, []).append(_Seen.of(path, parsed.dataset))
    studies = [
        check_study(members, config)
        for uid, members in group_by_study(results).items()
        if uid is not None
    ]
    labels = {uid: _study_label(members) for uid, members in seen.items()}
    return Validation(results, studies, labels)


def validate_files(
    files: Sequence[Path], config: ValidatorConfig,
    judged: Callable[[InstanceResult], None] = lambda result: None,
) -> tuple[list[InstanceResult], list[StudyResult]]:
    """Every file's verdict, then every study's (see :func:`validate_paths`)."""
    validation = validate_paths(files, config, judged)
    return validation.results, validation.studies


@dataclass(frozen=True)
class _Seen:
    """What one file tells of its study's label."""

    folder: str
    description: str | None
    date: str | None

    @classmethod
    def of(cls, path: Path, dataset: Dataset) -> _Seen:
        return cls(str(path.parent), _text(dataset, "StudyDescription"),
                   _readable_date(_text(dataset, "StudyDate")))


def read_study_label(paths: Sequence[Path]) -> StudyLabel:
    """The label of the study whose files are ``paths``: their folder, and the description
    and date of the first file whose header can be read (only those are read)."""
    for path in paths:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True,
                                     specific_tags=["StudyDescription", "StudyDate"])
        except (InvalidDicomError, OSError, ValueError):
            continue
        return _study_label([_Seen.of(path, header), *(_Seen(str(p.parent), None, None)
                                                       for p in paths)])
    return _study_label([_Seen(str(p.parent), None, None) for p in paths])


def _study_label(members: Sequence[_Seen]) -> StudyLabel:
    folders = {member.folder for member in members}
    return StudyLabel(
        folder=os.path.commonpath(sorted(folders)) if len(folders) > 1 else folders.pop(),
        description=next((m.description for m in members if m.description), None),
        date=next((m.date for m in members if m.date), None),
    )


def _text(dataset: Dataset, keyword: str) -> str | None:
    return str(dataset.get(keyword) or "").strip("\x00 ") or None


def _readable_date(value: str | None) -> str | None:
    """A DA value as YYYY-MM-DD when it is one; as it is otherwise."""
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def finding_line(finding: Finding) -> str:
    """A finding on one line for people: severity, rule, tag (when there is one), message."""
    tag = f"{finding.tag:11} " if finding.tag else ""
    return f"{finding.severity.value:7} {finding.rule:28} {tag}{finding.message}"


API_ENVIRONMENT = (
    "environment: PACS_VALIDATOR_API, the API's base URL (when --api is not given); "
    "PACS_VALIDATOR_TOKEN, the bearer token an API with token auth asks for. "
    'For the local stack: eval "$(local-runtime/stack env)" sets both.'
)


def add_api_arguments(parser: argparse.ArgumentParser,
                      json_help: str = "print the status documents") -> None:
    """``--api`` and ``--json`` (printing what ``json_help`` says), for the commands that
    talk to the deployed API, and the environment they read, in the help's epilog."""
    parser.add_argument("--api", metavar="URL",
                        help="the API's base URL (default: $PACS_VALIDATOR_API)")
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.epilog = API_ENVIRONMENT


def api_error_hint(error: ApiError) -> str | None:
    """What to do about an API's refusal, for the answers a user can act on: no or a wrong
    token (401, 403), an unknown study (404)."""
    if error.status in (401, 403):
        return ("the API wants a valid bearer token in PACS_VALIDATOR_TOKEN; for the local "
                'stack, eval "$(local-runtime/stack env)" sets it and PACS_VALIDATOR_API')
    if error.status == 404:
        return ("no such study at this API: check the STUDY_ID that upload printed, "
                "and that --api or PACS_VALIDATOR_API names the API it was sent to")
    return None


def print_api_error(error: ApiError, out: TextIO) -> None:
    """The API's refusal, and a hint when there is one."""
    print(f"pacs-validator: {error}", file=out)
    hint = api_error_hint(error)
    if hint:
        print_hint(hint, out)


def report_api_failure(error: ApiError | OSError | HTTPException) -> int:
    """Say on stderr why a call to the API failed (refused, with a hint when there is one,
    or not reached); the exit code that means: 2 for a request it called bad (400), else 1."""
    if isinstance(error, ApiError):
        print_api_error(error, sys.stderr)
        return EXIT_USAGE if error.status == 400 else EXIT_INVALID
    print(f"pacs-validator: the API cannot be reached: {error}", file=sys.stderr)
    return EXIT_INVALID


def print_hint(hint: str, out: TextIO) -> None:
    print(f"pacs-validator: hint: {hint}", file=out)


def api_client(args: argparse.Namespace) -> PacsClient:
    """The client of the API that ``--api`` or ``$PACS_VALIDATOR_API`` names, with the
    bearer token of ``$PACS_VALIDATOR_TOKEN`` when it is set; a URL the token may not be
    sent to (plain http to another machine) is a usage error."""
    try:
        return PacsClient.from_environment(args.api, jobs=getattr(args, "jobs", 8))
    except ValueError as error:
        raise UsageError(str(error)) from None
