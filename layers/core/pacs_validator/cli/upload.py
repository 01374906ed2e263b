"""``pacs-validator upload``: from a folder to a verdict, through the API.

Files are grouped into studies by StudyInstanceUID (as ``validate`` groups them); with
``--check`` a study the local rules reject is refused before anything is sent. Each study is
declared (``POST /upload``), its files go straight to S3, each through its own presigned
POST (its exact key and size), ``--jobs`` at a time, and the command waits for each study's
verdict.

Forms are asked for as files need them and replaced before they expire
(:mod:`pacs_validator.transfer.sending`). A request the API refuses (the study is past
RECEIVING, e.g. INCOMPLETE after the upload deadline) leaves the remaining files of that run
unsent.

Resuming: each study's id and declared files are kept in a small state file (by default
``.pacs-validator-upload.json`` in the current folder, readable by its owner only) from its
declaration until the command has every study's verdict; no form is kept. Running the same
command again after an interruption finds each study it had declared (same API, same
StudyInstanceUID, same files, sizes and modification times) and asks ``GET /status`` where
it is: a study still taking files gets only the files that did not arrive, with forms asked
for then; a study that has all its files is waited for, and one with a verdict (STORED or
REJECTED) is reported, neither sent again. A study that can take no files and will get no
verdict (the API does not know it, or it is INCOMPLETE or FAILED) is declared anew.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pacs_validator.cli.common import (
    EXIT_INVALID,
    EXIT_VALID,
    StudyLabel,
    UsageError,
    add_api_arguments,
    api_client,
    api_error_hint,
    collect_files,
    read_study_label,
    validate_files,
)
from pacs_validator.cli.progress import ProgressView, file_count, progress_view
from pacs_validator.cli.report import print_findings, print_warning_counts
from pacs_validator.cli.status import print_status
from pacs_validator.contract.states import OPEN_STATES, TERMINAL_STATES, State
from pacs_validator.dicom.config import ValidatorConfig, load_config
from pacs_validator.transfer.client import (
    TRANSIENT_ERRORS,
    ApiError,
    PacsClient,
    group_by_study_uid,
    upload_names,
)
from pacs_validator.transfer.sending import StudyForms, send_files

STATE_FILE = ".pacs-validator-upload.json"
@dataclass(frozen=True)
class StudyFiles:
    """One study found on disk: its files under the names they are uploaded as, and what
    people know it by (its folder, description and date)."""

    study_instance_uid: str
    files: dict[str, Path]
    label: StudyLabel

    @property
    def sizes(self) -> dict[str, int]:
        return {name: path.stat().st_size for name, path in self.files.items()}

    @property
    def modified(self) -> dict[str, int]:
        """Each file's modification time (ns): a file changed since its study was declared
        has another."""
        return {name: path.stat().st_mtime_ns for name, path in self.files.items()}

    def heading(self) -> str:
        """The study as people know it, as ``validate`` names it: its StudyInstanceUID,
        folder, description and date."""
        return f"study {self.study_instance_uid} {self.label.text()}"


@dataclass
class StudyOutcome:
    """What became of one study: its id and final status, or why it has none."""

    study: StudyFiles
    study_id: str | None = None
    document: dict[str, Any] | None = None
    problem: str | None = None
    refused: bool = False
    """Refused by the local rules (``--check``): nothing was sent."""

    @property
    def stored(self) -> bool:
        return self.document is not None and self.document["state"] == State.STORED

    @property
    def verdict(self) -> str:
        """The study's state, REFUSED (by ``--check``) or NOT DONE (no verdict)."""
        if self.document is not None:
            return str(self.document["state"])
        return "REFUSED" if self.refused else "NOT DONE"


@dataclass(frozen=True)
class KeptStudy:
    """A study an earlier run of the command declared, as the API sees it now: its id, the
    files that arrived, and whether it still takes files (else it has them all)."""

    study_id: str
    received: set[str]
    taking_files: bool


class UploadState:
    """The studies of an unfinished command by API and StudyInstanceUID, kept in a JSON file
    (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = (
            json.loads(path.read_text("utf-8"))["uploads"] if path.is_file() else {})

    @staticmethod
    def _key(api_base: str, study_instance_uid: str) -> str:
        return f"{api_base} {study_instance_uid}"

    def get(self, api_base: str, study_instance_uid: str) -> dict[str, Any] | None:
        return self.entries.get(self._key(api_base, study_instance_uid))

    def put(self, api_base: str, study_instance_uid: str, entry: dict[str, Any]) -> None:
        self.entries[self._key(api_base, study_instance_uid)] = entry
        self._save()

    def drop(self, api_base: str, study_instance_uid: str) -> None:
        if self.entries.pop(self._key(api_base, study_instance_uid), None) is not None:
            self._save()

    def _save(self) -> None:
        if not self.entries:
            self.path.unlink(missing_ok=True)
            return
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump({"version": 1, "uploads": self.entries}, stream, indent=1)


def find_studies(paths: Sequence[str], view_note: Callable[[str], None]
                 ) -> list[StudyFiles]:
    """The studies among the files and folders named, files without a readable
    StudyInstanceUID reported and left out."""
    studies, left_out = group_by_study_uid(collect_files(paths))
    for path, reason in left_out.items():
        view_note(f"skipped ({reason}): {path}")
    if not studies:
        raise UsageError("no DICOM study among the files given")
    return [StudyFiles(uid, upload_names(files), read_study_label(files))
            for uid, files in studies.items()]


def refusal(study: StudyFiles, config: ValidatorConfig, out: TextIO, verbose: bool
            ) -> str | None:
    """Why the local rules reject the study, or None. Its findings are printed as
    ``validate`` prints them: errors listed, warnings counted by rule (every one when
    ``verbose``)."""
    with file_count(out, len(study.files), "checking") as count:
        results, verdicts = validate_files(list(study.files.values()), config,
                                           lambda result: count.advance())
    if all(r.valid for r in results) and all(v.valid for v in verdicts):
        return None
    print(f"REFUSED    {study.heading()}", file=out)
    for result in results:
        print_findings(result.findings, out, verbose=verbose, label=f"{result.name}: ")
    for verdict in verdicts:
        print_findings(verdict.findings, out, verbose=verbose, label="study: ")
    if not verbose:
        print_warning_counts([f for r in results for f in r.findings]
                             + [f for v in verdicts for f in v.findings], out)
    return "refused: the local rules reject it (--check); nothing was sent"


def not_declared(error: Exception) -> str:
    """Why a study could not be declared, with what to do when the API's answer says."""
    hint = api_error_hint(error) if isinstance(error, ApiError) else None
    return f"not declared: {error}" + (f"\n    hint: {hint}" if hint else "")


def kept_study(study: StudyFiles, client: PacsClient, state: UploadState,
               view: ProgressView) -> KeptStudy | None:
    """The study as an earlier run declared it, when it can still take its files or give its
    verdict (else its kept entry is dropped, and it is to be declared anew)."""
    entry = state.get(client.api_base, study.study_instance_uid)
    if entry is None:
        return None
    reason = None
    if entry["files"] != study.sizes or entry.get("modified", study.modified) != study.modified:
        reason = "its files changed"
    else:
        try:
            current = client.full_status(entry["study_id"])
        except ApiError as error:
            reason = f"the API answers HTTP {error.status}"
        else:
            if current["state"] not in (State.FAILED, State.INCOMPLETE):
                return KeptStudy(str(entry["study_id"]), {f["name"] for f in current["files"]},
                                 current["state"] in OPEN_STATES)
            reason = f"it is {current['state']}"
    view.note(f"study {entry['study_id']} cannot be resumed ({reason}): declaring it anew")
    state.drop(client.api_base, study.study_instance_uid)
    return None


def send_study(study: StudyFiles, kept: KeptStudy | None, task: int, client: PacsClient,
               state: UploadState, view: ProgressView) -> StudyOutcome:
    """Declare the study (or resume the one an earlier run declared) and send the files not
    yet received, ``client.jobs`` at a time. The kept entry stays until the command has the
    study's verdict."""
    sizes = study.sizes
    declared: dict[str, Any] | None = None
    if kept is None:
        asked = time.time()
        declared = client.declare(sizes)
        study_id, received = str(declared["study_id"]), set[str]()
        state.put(client.api_base, study.study_instance_uid,
                  {"study_id": study_id, "files": sizes, "modified": study.modified})
    elif kept.taking_files:
        study_id, received = kept.study_id, kept.received
        view.note(f"resuming study {study_id}: {len(received)} of {len(sizes)} "
                  f"file(s) already received")
    else:
        view.note(f"study {kept.study_id} has every file already: not sent again")
        return StudyOutcome(study, kept.study_id)
    unsent_names = [name for name in sizes if name not in received]  # as declared
    forms = StudyForms(client, study_id, unsent_names)
    if declared is not None:
        forms.keep(declared, asked)
    view.start(task)
    unsent = send_files(study.files, unsent_names, forms, client,
                         lambda sent, files: view.advance(task, sent, files))
    outcome = StudyOutcome(study, study_id)
    if unsent:
        outcome.problem = (f"{len(unsent)} of {len(sizes)} file(s) not sent; run the same "
                           f"command again to resume")
    return outcome


def await_verdict(outcome: StudyOutcome, client: PacsClient, timeout: float) -> None:
    """Wait for the study's terminal state and keep its whole status document."""
    if outcome.problem is not None or outcome.study_id is None:
        return
    try:
        client.wait(outcome.study_id, timeout=timeout)
    except TimeoutError:
        outcome.problem = (f"no verdict after {timeout:.0f} s; see later with: "
                           f"pacs-validator status {outcome.study_id}")
        return
    outcome.document = client.full_status(outcome.study_id)


def add_parser(commands: Any) -> None:
    upload = commands.add_parser("upload", help="upload studies through the API and wait for "
                                                "their verdicts (needs the client extra)")
    upload.add_argument("paths", nargs="+", metavar="PATH")
    add_api_arguments(upload)
    upload.add_argument("--jobs", type=int, default=8, metavar="N",
                        help="files sent at a time (default 8)")
    upload.add_argument("--check", action="store_true",
                        help="validate locally first; refuse a study the rules reject")
    upload.add_argument("--config", metavar="FILE", help="JSON configuration for --check")
    upload.add_argument("--state", metavar="FILE", default=STATE_FILE,
                        help=f"where unfinished uploads are kept for resuming "
                             f"(default ./{STATE_FILE})")
    upload.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                        help="how long to wait for each study's verdict (default 600)")
    upload.add_argument("-v", "--verbose", action="store_true",
                        help="list every finding (by default warnings are counted by rule)")


def run(args: argparse.Namespace) -> int:
    """``pacs-validator upload``: 0 when every study is STORED, 1 otherwise."""
    out = sys.stderr if args.json else sys.stdout
    client = api_client(args)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    config = load_config(args.config) if args.check else None
    studies = find_studies(args.paths, lambda text: print(text, file=sys.stderr))
    try:
        outcomes = _run(studies, client, config, UploadState(Path(args.state)), out,
                        args.timeout, args.verbose)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps([o.document for o in outcomes if o.document is not None], indent=2))
    return EXIT_VALID if all(o.stored for o in outcomes) else EXIT_INVALID


def _run(studies: list[StudyFiles], client: PacsClient, config: ValidatorConfig | None,
         state: UploadState, out: TextIO, timeout: float, verbose: bool
         ) -> list[StudyOutcome]:
    """Check, send, then wait: each study's outcome, printed as it is known, then the
    totals. Every study is looked up in the kept state and added to the progress before the
    first is sent, so the overall total is known from the start."""
    outcomes: list[StudyOutcome] = []
    accepted: list[StudyFiles] = []
    for study in studies:
        problem = refusal(study, config, out, verbose) if config is not None else None
        if problem is None:
            accepted.append(study)
        else:
            outcomes.append(StudyOutcome(study, problem=problem, refused=True))
            print(f"    {problem}", file=out)
    sent: list[StudyOutcome] = []
    with progress_view(out) as view:
        kept = [kept_study(study, client, state, view) for study in accepted]
        tasks = [_add_task(view, index, len(accepted), study, found)
                 for index, (study, found) in enumerate(zip(accepted, kept, strict=True), 1)]
        for study, found, task in zip(accepted, kept, tasks, strict=True):
            try:
                sent.append(send_study(study, found, task, client, state, view))
            except (ApiError, *TRANSIENT_ERRORS) as error:  # refused (413, 401 ...), or no API
                sent.append(StudyOutcome(study, problem=not_declared(error)))
    for outcome in sent:
        try:
            await_verdict(outcome, client, timeout)
        except (ApiError, *TRANSIENT_ERRORS) as error:
            outcome.problem = f"no status: {error}"
        print(outcome.study.heading(), file=out)
        if outcome.document is not None:
            print_status(outcome.document, out, verbose=verbose)
            if outcome.document["state"] in TERMINAL_STATES:
                state.drop(client.api_base, outcome.study.study_instance_uid)
        else:
            print(f"{'NOT DONE':10} {outcome.study_id or '-'}: {outcome.problem}", file=out)
    outcomes += sent
    print(upload_totals(outcomes), file=out)
    return outcomes


def _add_task(view: ProgressView, index: int, count: int, study: StudyFiles,
              kept: KeptStudy | None) -> int:
    """The study's progress task, with what an earlier run sent counted as done."""
    sizes = study.sizes
    received = kept.received & sizes.keys() if kept is not None else set()
    return view.add(f"study {index}/{count} {Path(study.label.folder).name}",
                    len(sizes), sum(sizes.values()), len(received),
                    sum(sizes[name] for name in received))


def upload_totals(outcomes: Sequence[StudyOutcome]) -> str:
    """``5 studies: 4 STORED, 1 REJECTED`` (REFUSED by ``--check``, NOT DONE without a
    verdict)."""
    verdicts = Counter(o.verdict for o in outcomes)
    order = [State.STORED.value, State.REJECTED.value, "REFUSED", "NOT DONE"]
    counted = sorted(verdicts.items(), key=lambda item: (
        order.index(item[0]) if item[0] in order else len(order), item[0]))
    studies = "study" if len(outcomes) == 1 else "studies"
    return f"{len(outcomes)} {studies}: " + ", ".join(f"{n} {v}" for v, n in counted)
