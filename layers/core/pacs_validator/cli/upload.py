"""``pacs-validator upload``: from a folder to a verdict, through the API.

Files are grouped into studies by StudyInstanceUID (as ``validate`` groups them); with
``--check`` a study the local rules reject is refused before anything is sent. Each study is
declared (``POST /upload``), its files go straight to S3, each through its own presigned
POST (its exact key and size), ``--jobs`` at a time, and the command waits for each study's
verdict.

The declaration answers the forms of the first files; the others are asked for by name
(``POST /upload/{id}``, :data:`NAMES_PER_FORM_REQUEST` at a time) when a file needs one.
Forms expire (``expires_in``, 15 minutes by default) and a big study can take longer to
send, so a file whose form expires within ``EXPIRY_MARGIN`` seconds gets a fresh one first,
and a file S3 refuses with 403 (an expired form) is sent once more with a fresh form. A
request the API refuses (the study is past RECEIVING, e.g. INCOMPLETE after the upload
deadline) leaves the remaining files of that run unsent.

Resuming: each study's id and declared files are kept in a small state file (by default
``.pacs-validator-upload.json`` in the current folder, readable by its owner only) from the
declaration until every file is sent; no form is kept. Running the same command again finds
the unfinished study (same API, same StudyInstanceUID, same files and sizes), asks
``GET /status`` which files arrived, and sends only the others, with forms asked for then.
A study that can no longer take files (the API does not know it, or it already reached a
state past RECEIVING, e.g. INCOMPLETE after the upload deadline) is declared anew.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from pacs_validator.cli.client import (
    TRANSIENT_ERRORS,
    ApiError,
    PacsClient,
    group_by_study_uid,
    upload_names,
)
from pacs_validator.cli.common import (
    EXIT_INVALID,
    EXIT_VALID,
    UsageError,
    add_api_arguments,
    api_client,
    collect_files,
    finding_line,
    validate_files,
)
from pacs_validator.cli.progress import ProgressView, progress_view
from pacs_validator.cli.status import print_status
from pacs_validator.contract.states import OPEN_STATES, State
from pacs_validator.contract.upload_request import NAMES_PER_FORM_REQUEST
from pacs_validator.dicom.config import ValidatorConfig, load_config

STATE_FILE = ".pacs-validator-upload.json"
EXPIRY_MARGIN = 60
"""Seconds of validity an upload form must still have for a file to be sent with it; for a
form closer to its expiry a fresh one is asked for first."""


@dataclass(frozen=True)
class StudyFiles:
    """One study found on disk: its files under the names they are uploaded as."""

    study_instance_uid: str
    files: dict[str, Path]

    @property
    def sizes(self) -> dict[str, int]:
        return {name: path.stat().st_size for name, path in self.files.items()}


@dataclass
class StudyOutcome:
    """What became of one study: its id and final status, or why it has none."""

    study: StudyFiles
    study_id: str | None = None
    document: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def stored(self) -> bool:
        return self.document is not None and self.document["state"] == State.STORED


class WaitInterrupted(Exception):
    """Ctrl-C while waiting for verdicts. The studies named had every file sent, so their kept
    uploads are gone and running the command again would declare them anew: the verdict is
    for ``pacs-validator status`` to tell."""

    def __init__(self, study_ids: list[str]) -> None:
        super().__init__(study_ids)
        self.study_ids = study_ids


class UploadState:
    """Unfinished uploads by API and StudyInstanceUID, kept in a JSON file (module docstring)."""

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


class StudyForms:
    """The per-file forms of one study's files, each asked for when a file needs it: with
    the next files of the study that have no fresh form, :data:`NAMES_PER_FORM_REQUEST`
    at a time (module docstring). Shared by the threads sending the study's files: forms
    are asked for under a lock, and a request the API refused is not made again in this
    run (its error is raised for every file still to send)."""

    def __init__(self, client: PacsClient, study_id: str, names: Sequence[str]) -> None:
        self.client = client
        self.study_id = study_id
        self.unsent = dict.fromkeys(names)
        """The files not yet sent, in the order they are sent: a request asks for the
        next ones."""
        self.forms: dict[str, dict[str, Any]] = {}
        self.stale_at: dict[str, float] = {}
        """When each form is to be replaced before a file is sent with it."""
        self.lock = threading.Lock()
        self.failure: Exception | None = None

    def keep(self, answer: Mapping[str, Any], asked: float) -> None:
        """Keep the forms of an answer (the declaration's, or a request's). A form is
        replaced ``EXPIRY_MARGIN`` seconds before it expires, its expiry counted from before
        the request, so never later than S3's; one that lives no longer than that (the API
        ends forms at the study's upload deadline, and a new one would end there too) is
        used until S3 refuses it."""
        expires_in = int(answer["expires_in"])
        stale_at = asked + expires_in - EXPIRY_MARGIN if expires_in > EXPIRY_MARGIN \
            else float("inf")
        for form in answer["uploads"]:
            self.forms[str(form["name"])] = form
            self.stale_at[str(form["name"])] = stale_at

    def _fresh(self, name: str) -> bool:
        return name in self.forms and self.stale_at[name] > time.time()

    def form(self, name: str) -> dict[str, Any]:
        """The form to send ``name`` with now, asked for first when it has none or it is
        expiring."""
        with self.lock:
            if not self._fresh(name):
                self._ask(name)
            return self.forms[name]

    def refused(self, name: str, form: dict[str, Any]) -> dict[str, Any]:
        """The form to send again a file S3 refused (403) when sent with ``form``: a fresh
        one, unless another thread got one since. Every form kept no later than this one
        has expired too (the command's clock was behind S3's): all are asked for anew."""
        with self.lock:
            if self.forms.get(name) is form:
                refused_at = self.stale_at[name]
                for other, stale_at in self.stale_at.items():
                    if stale_at <= refused_at:
                        self.stale_at[other] = 0
                self._ask(name)
            return self.forms[name]

    def sent(self, name: str) -> None:
        """``name`` is sent: no form is asked for it any more."""
        with self.lock:
            self.unsent.pop(name, None)

    def _ask(self, name: str) -> None:
        if self.failure is not None:
            raise self.failure
        others = (n for n in self.unsent if n != name and not self._fresh(n))
        batch = [name, *islice(others, NAMES_PER_FORM_REQUEST - 1)]
        asked = time.time()
        try:
            self.keep(self.client.forms(self.study_id, batch), asked)
        except (ApiError, *TRANSIENT_ERRORS) as error:
            self.failure = error
            raise


def find_studies(paths: Sequence[str], view_note: Callable[[str], None]
                 ) -> list[StudyFiles]:
    """The studies among the files and folders named, files without a readable
    StudyInstanceUID reported and left out."""
    studies, left_out = group_by_study_uid(collect_files(paths))
    for path in left_out:
        view_note(f"skipped (no readable StudyInstanceUID): {path}")
    if not studies:
        raise UsageError("no DICOM study among the files given")
    return [StudyFiles(uid, upload_names(files)) for uid, files in studies.items()]


def refusal(study: StudyFiles, config: ValidatorConfig, out: TextIO) -> str | None:
    """Why the local rules reject the study (its findings printed), or None."""
    results, verdicts = validate_files(list(study.files.values()), config)
    if all(r.valid for r in results) and all(v.valid for v in verdicts):
        return None
    for result in results:
        for finding in result.findings:
            print(f"    {result.name}: {finding_line(finding)}", file=out)
    for verdict in verdicts:
        for finding in verdict.findings:
            print(f"    study: {finding_line(finding)}", file=out)
    return "refused: the local rules reject it (--check); nothing was sent"


def _resumable(study: StudyFiles, client: PacsClient, state: UploadState,
               view: ProgressView) -> tuple[str, set[str]] | None:
    """The kept study id of this study and the names of its files that arrived, when it
    can still take the rest (else the kept entry is dropped)."""
    entry = state.get(client.api_base, study.study_instance_uid)
    if entry is None:
        return None
    reason = None
    if entry["files"] != study.sizes:
        reason = "its files changed"
    else:
        try:
            current = client.full_status(entry["study_id"])
            if current["state"] not in OPEN_STATES:
                reason = f"it is {current['state']}"
        except ApiError as error:
            reason = f"the API answers HTTP {error.status}"
        else:
            if reason is None:
                return str(entry["study_id"]), {f["name"] for f in current["files"]}
    view.note(f"study {entry['study_id']} cannot be resumed ({reason}): declaring it anew")
    state.drop(client.api_base, study.study_instance_uid)
    return None


def send_study(study: StudyFiles, label: str, client: PacsClient, state: UploadState,
               view: ProgressView) -> StudyOutcome:
    """Declare the study (or resume its kept upload) and send the files not yet received,
    ``client.jobs`` at a time; the kept entry is dropped once every file is sent."""
    sizes = study.sizes
    resumed = _resumable(study, client, state, view)
    declared: dict[str, Any] | None = None
    if resumed is None:
        asked = time.time()
        declared = client.declare(sizes)
        study_id, received = str(declared["study_id"]), set[str]()
        state.put(client.api_base, study.study_instance_uid,
                  {"study_id": study_id, "files": sizes})
    else:
        study_id, received = resumed
        view.note(f"resuming study {study_id}: {len(received)} of {len(sizes)} "
                  f"file(s) already received")
    unsent_names = [name for name in sizes if name not in received]  # as declared
    forms = StudyForms(client, study_id, unsent_names)
    if declared is not None:
        forms.keep(declared, asked)
    task = view.add(label, len(sizes), sum(sizes.values()))
    view.advance(task, sent=sum(sizes[n] for n in received if n in sizes),
                 files=len(received & sizes.keys()))
    unsent = _send_files(study, unsent_names, forms, client,
                         lambda sent, files: view.advance(task, sent, files))
    outcome = StudyOutcome(study, study_id)
    if unsent:
        outcome.problem = (f"{len(unsent)} of {len(sizes)} file(s) not sent; run the same "
                           f"command again to resume")
    else:
        state.drop(client.api_base, study.study_instance_uid)
    return outcome


def _send_file(study: StudyFiles, name: str, forms: StudyForms, client: PacsClient,
               progress: Callable[[int], None]) -> None:
    """Send one file with its form (a fresh one when it has none or it is expiring); once
    more with a fresh form when S3 refuses it with 403, as it refuses a form that
    expired."""
    form = forms.form(name)
    try:
        client.send_file(form, name, study.files[name], progress)
    except ApiError as error:
        if error.status != 403:
            raise
        client.send_file(forms.refused(name, form), name, study.files[name], progress)
    forms.sent(name)


def _send_files(study: StudyFiles, names: list[str], forms: StudyForms, client: PacsClient,
                advance: Callable[[int, int], None]) -> list[str]:
    """Send ``names`` in parallel; the names that could not be sent. On an interruption
    (Ctrl-C) the queued files are cancelled at once, not sent first."""
    pool = ThreadPoolExecutor(max_workers=client.jobs)
    try:
        futures: dict[Future[None], str] = {
            pool.submit(_send_file, study, name, forms, client,
                        lambda sent: advance(sent, 0)): name
            for name in names
        }
        unsent = []
        for future in as_completed(futures):
            try:
                future.result()
                advance(0, 1)
            except (ApiError, *TRANSIENT_ERRORS):
                unsent.append(futures[future])
        return unsent
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
                        args.timeout)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INVALID
    except WaitInterrupted as interrupted:
        for study_id in interrupted.study_ids:
            print(f"interrupted: every file of study {study_id} was sent; its verdict: "
                  f"pacs-validator status {study_id}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps([o.document for o in outcomes if o.document is not None], indent=2))
    return EXIT_VALID if all(o.stored for o in outcomes) else EXIT_INVALID


def _run(studies: list[StudyFiles], client: PacsClient, config: ValidatorConfig | None,
         state: UploadState, out: TextIO, timeout: float) -> list[StudyOutcome]:
    """Check, send, then wait: each study's outcome, printed as it is known."""
    outcomes: list[StudyOutcome] = []
    accepted: list[StudyFiles] = []
    for study in studies:
        problem = refusal(study, config, out) if config is not None else None
        if problem is None:
            accepted.append(study)
        else:
            outcomes.append(StudyOutcome(study, problem=problem))
            print(f"REFUSED    {study.study_instance_uid}: {problem}", file=out)
    sent: list[StudyOutcome] = []
    with progress_view(out) as view:
        for index, study in enumerate(accepted, 1):
            common = Path(os.path.commonpath(list(study.files.values())))
            label = f"study {index}/{len(accepted)} {common.name}"
            try:
                sent.append(send_study(study, label, client, state, view))
            except (ApiError, *TRANSIENT_ERRORS) as error:  # refused (413, 401 ...), or no API
                sent.append(StudyOutcome(study, problem=f"not declared: {error}"))
    for outcome in sent:
        try:
            await_verdict(outcome, client, timeout)
        except (ApiError, *TRANSIENT_ERRORS) as error:
            outcome.problem = f"no status: {error}"
        except KeyboardInterrupt:
            raise WaitInterrupted([str(o.study_id) for o in sent if o.study_id is not None
                                   and o.problem is None and o.document is None]) from None
        if outcome.document is not None:
            print_status(outcome.document, out)
        else:
            print(f"{'NOT DONE':10} {outcome.study_id or outcome.study.study_instance_uid}: "
                  f"{outcome.problem}", file=out)
    return outcomes + sent


