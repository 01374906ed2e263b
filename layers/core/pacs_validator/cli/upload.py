"""``pacs-validator upload``: from a folder to a verdict, through the API.

Files are grouped into studies by StudyInstanceUID (as ``validate`` groups them); with
``--check`` a study the local rules reject is refused before anything is sent. Each study is
declared (``POST /upload``), its files go straight to S3 through the study-wide presigned
POST, ``--jobs`` at a time, and the command waits for each study's verdict.

The study-wide form expires (``expires_in``, 15 minutes by default) and a big study can take
longer to send, so the form is kept fresh: before a file is sent, a form that expires within
``EXPIRY_MARGIN`` seconds is renewed (``POST /upload/{id}``, once for all the threads sending
the study), and a file S3 refuses with 403 (an expired form) is retried once with a renewed
form. A renewal the API refuses (the study is past RECEIVING, e.g. INCOMPLETE after the
upload deadline) leaves the remaining files of that run unsent.

Resuming: the study id and its upload form are kept in a small state file (by default
``.pacs-validator-upload.json`` in the current folder, readable by its owner only, since the
form lets its holder upload into that study until it expires) from the declaration until
every file is sent; a renewed form replaces the kept one. Running the same command again
finds the unfinished study (same API, same StudyInstanceUID, same files and sizes), asks
``GET /status`` which files arrived, renews the kept form if it has expired, and sends only
the others. A study that can no longer take files (the API does not know it, or it already
reached a state past RECEIVING, e.g. INCOMPLETE after the upload deadline) is declared anew.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
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
from pacs_validator.dicom.config import ValidatorConfig, load_config

STATE_FILE = ".pacs-validator-upload.json"
EXPIRY_MARGIN = 60
"""Seconds of validity an upload form must still have for a file to be sent with it; a form
closer to its expiry is renewed first."""
RESUMABLE_STATES = frozenset({"AWAITING_UPLOAD", "RECEIVING"})


@dataclass(frozen=True)
class StudyFiles:
    """One study found on disk: its files under the names they are uploaded as."""

    study_instance_uid: str
    files: dict[str, Path]

    @property
    def sizes(self) -> dict[str, int]:
        return {name: path.stat().st_size for name, path in self.files.items()}


@dataclass
class Outcome:
    """What became of one study: its id and final status, or why it has none."""

    study: StudyFiles
    study_id: str | None = None
    document: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def stored(self) -> bool:
        return self.document is not None and self.document["state"] == "STORED"


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


class KeptForm:
    """A study's kept upload (its entry in the state file) and the form its files are sent
    with, renewed through ``POST /upload/{id}`` when it is about to expire or S3 refuses it.
    Shared by the threads sending the study's files: a renewal is made once, under a lock,
    and one the API refused is not asked for again in this run. A renewal that brought the
    expiry no later (the API ends forms at the study's upload deadline) is not asked for
    again before a file either: the form is used until S3 refuses it."""

    def __init__(self, client: PacsClient, state: UploadState, study_instance_uid: str,
                 entry: dict[str, Any]) -> None:
        self.client = client
        self.state = state
        self.study_instance_uid = study_instance_uid
        self.entry = entry
        self.lock = threading.Lock()
        self.failure: Exception | None = None
        self.at_deadline = False

    def expiring(self) -> bool:
        """Whether the form expires within ``EXPIRY_MARGIN`` seconds (or has expired) and a
        renewal could give a later one."""
        return not self.at_deadline and self.entry["expires_at"] < time.time() + EXPIRY_MARGIN

    def renew(self) -> None:
        """A fresh form from the API, kept in the entry and the state file (its expiry
        counted from before the request, so never later than S3's)."""
        asked = time.time()
        renewed = self.client.renew(str(self.entry["study_id"]))
        expires_at = asked + int(renewed["expires_in"])
        self.at_deadline = expires_at < self.entry["expires_at"] + EXPIRY_MARGIN
        self.entry["upload"] = renewed["upload"]
        self.entry["expires_at"] = expires_at
        self.state.put(self.client.api_base, self.study_instance_uid, self.entry)

    def form(self) -> dict[str, Any]:
        """The form to send a file with now, renewed first when it is expiring."""
        with self.lock:
            if self.expiring():
                self._renew_once()
            form: dict[str, Any] = self.entry["upload"]
            return form

    def refused(self, form: dict[str, Any]) -> dict[str, Any]:
        """The form to send again a file S3 refused (403) when sent with ``form``: renewed,
        unless another thread renewed it since."""
        with self.lock:
            if self.entry["upload"] is form:
                self._renew_once()
            fresh: dict[str, Any] = self.entry["upload"]
            return fresh

    def _renew_once(self) -> None:
        if self.failure is not None:
            raise self.failure
        try:
            self.renew()
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
               view: ProgressView) -> tuple[KeptForm, set[str]] | None:
    """The kept upload of this study (its form renewed if it has expired) and the names of
    its files that arrived, when it can still take the rest (else the kept entry is
    dropped)."""
    entry = state.get(client.api_base, study.study_instance_uid)
    if entry is None:
        return None
    kept = KeptForm(client, state, study.study_instance_uid, entry)
    reason = None
    if entry["files"] != study.sizes:
        reason = "its files changed"
    else:
        try:
            current = client.full_status(entry["study_id"])
            if current["state"] not in RESUMABLE_STATES:
                reason = f"it is {current['state']}"
            elif kept.expiring():
                kept.renew()
                view.note(f"study {entry['study_id']}: its upload form expired; renewed it")
        except ApiError as error:
            reason = f"the API answers HTTP {error.status}"
        else:
            if reason is None:
                return kept, {f["name"] for f in current["files"]}
    view.note(f"study {entry['study_id']} cannot be resumed ({reason}): declaring it anew")
    state.drop(client.api_base, study.study_instance_uid)
    return None


def send_study(study: StudyFiles, label: str, client: PacsClient, state: UploadState,
               view: ProgressView) -> Outcome:
    """Declare the study (or resume its kept upload) and send the files not yet received,
    ``client.jobs`` at a time; the kept entry is dropped once every file is sent."""
    sizes = study.sizes
    resumed = _resumable(study, client, state, view)
    if resumed is None:
        asked = time.time()
        declared = client.declare(sizes)
        entry = {"study_id": declared["study_id"], "upload": declared["upload"],
                 "expires_at": asked + int(declared["expires_in"]), "files": sizes}
        state.put(client.api_base, study.study_instance_uid, entry)
        kept = KeptForm(client, state, study.study_instance_uid, entry)
        received: set[str] = set()
    else:
        kept, received = resumed
        view.note(f"resuming study {kept.entry['study_id']}: {len(received)} of {len(sizes)} "
                  f"file(s) already received")
    task = view.add(label, len(sizes), sum(sizes.values()))
    view.advance(task, sent=sum(sizes[n] for n in received if n in sizes),
                 files=len(received & sizes.keys()))
    unsent = _send_files(study, sorted(sizes.keys() - received), kept, client,
                         lambda sent, files: view.advance(task, sent, files))
    outcome = Outcome(study, str(kept.entry["study_id"]))
    if unsent:
        outcome.problem = (f"{len(unsent)} of {len(sizes)} file(s) not sent; run the same "
                           f"command again to resume")
    else:
        state.drop(client.api_base, study.study_instance_uid)
    return outcome


def _send_file(study: StudyFiles, name: str, kept: KeptForm, client: PacsClient,
               progress: Callable[[int], None]) -> None:
    """Send one file with the kept form (renewed when expiring); once more with a renewed
    form when S3 refuses it with 403, as it refuses a form that expired."""
    form = kept.form()
    try:
        client.send_file(form, name, study.files[name], progress)
    except ApiError as error:
        if error.status != 403:
            raise
        client.send_file(kept.refused(form), name, study.files[name], progress)


def _send_files(study: StudyFiles, names: list[str], kept: KeptForm, client: PacsClient,
                advance: Callable[[int, int], None]) -> list[str]:
    """Send ``names`` in parallel; the names that could not be sent. On an interruption
    (Ctrl-C) the queued files are cancelled at once, not sent first."""
    pool = ThreadPoolExecutor(max_workers=client.jobs)
    try:
        futures: dict[Future[None], str] = {
            pool.submit(_send_file, study, name, kept, client,
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


def await_verdict(outcome: Outcome, client: PacsClient, timeout: float) -> None:
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
         state: UploadState, out: TextIO, timeout: float) -> list[Outcome]:
    """Check, send, then wait: each study's outcome, printed as it is known."""
    outcomes: list[Outcome] = []
    accepted: list[StudyFiles] = []
    for study in studies:
        problem = refusal(study, config, out) if config is not None else None
        if problem is None:
            accepted.append(study)
        else:
            outcomes.append(Outcome(study, problem=problem))
            print(f"REFUSED    {study.study_instance_uid}: {problem}", file=out)
    sent: list[Outcome] = []
    with progress_view(out) as view:
        for index, study in enumerate(accepted, 1):
            common = Path(os.path.commonpath(list(study.files.values())))
            label = f"study {index}/{len(accepted)} {common.name}"
            try:
                sent.append(send_study(study, label, client, state, view))
            except (ApiError, *TRANSIENT_ERRORS) as error:  # refused (413, 401 ...), or no API
                sent.append(Outcome(study, problem=f"not declared: {error}"))
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


