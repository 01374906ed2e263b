"""Sending a declared study's files, each through its own presigned form, with forms asked
for when a file needs one and replaced before they expire.

The declaration answers the forms of the first files; the others are asked for by name
(``POST /upload/{id}``, :data:`NAMES_PER_FORM_REQUEST` at a time) when a file needs one.
Forms expire (``expires_in``, 15 minutes by default) and a big study can take longer to
send, so a file whose form expires within ``EXPIRY_MARGIN`` seconds gets a fresh one first,
and a file S3 refuses with 403 (an expired form) is sent once more with a fresh form.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from itertools import islice
from pathlib import Path
from typing import Any

from pacs_validator.contract.upload_request import NAMES_PER_FORM_REQUEST
from pacs_validator.transfer.client import TRANSIENT_ERRORS, ApiError, PacsClient

EXPIRY_MARGIN = 60
"""Seconds of validity an upload form must still have for a file to be sent with it; for a
form closer to its expiry a fresh one is asked for first."""


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


def send_file(files: Mapping[str, Path], name: str, forms: StudyForms, client: PacsClient,
              progress: Callable[[int], None]) -> None:
    """Send one file with its form (a fresh one when it has none or it is expiring); once
    more with a fresh form when S3 refuses it with 403, as it refuses a form that
    expired."""
    form = forms.form(name)
    try:
        client.send_file(form, name, files[name], progress)
    except ApiError as error:
        if error.status != 403:
            raise
        client.send_file(forms.refused(name, form), name, files[name], progress)
    forms.sent(name)


def send_files(files: Mapping[str, Path], names: list[str], forms: StudyForms,
               client: PacsClient, advance: Callable[[int, int], None]) -> list[str]:
    """Send ``names`` in parallel; the names that could not be sent. On an interruption
    (Ctrl-C) the queued files are cancelled at once, not sent first."""
    pool = ThreadPoolExecutor(max_workers=client.jobs)
    try:
        futures: dict[Future[None], str] = {
            pool.submit(send_file, files, name, forms, client,
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
