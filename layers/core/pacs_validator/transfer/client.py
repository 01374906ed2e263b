"""A small HTTP client for the deployed API: declare, ask for upload forms, upload through
presigned POSTs, wait.

Standard library and pydicom only, so the demo, the end-to-end tests, the ``upload`` command
and users' scripts share one way of talking to the service, on AWS or on LocalStack alike.
API calls carry ``Authorization: Bearer <token>`` when a token is given; uploads to S3 never
do (the presigned form is their authorisation, and S3 would refuse a second one). So that the
token reaches only the API it was given for, the API's URL must be https (plain http only to
this machine, as LocalStack's), and no redirect is followed: an API that answers one is an
error, not a hop that would carry the token to another host.
Transient failures (a 5xx answer, a refused or broken connection) are retried with
exponential backoff and jitter.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from pacs_validator.contract.names import CHECKSUM_ALGORITHM_FIELD, CHECKSUM_FIELD, safe_name
from pacs_validator.contract.states import TERMINAL_STATES
from pacs_validator.contract.upload_request import NAMES_PER_FORM_REQUEST

UPLOAD_CHUNK = 1024 * 1024
"""Bytes read and sent at a time when a file is streamed from disk."""
STATUS_PAGE = 1000
"""Files per ``GET /status`` page when every file's verdict is wanted (the API's maximum)."""
LIST_PAGE = 100
"""Studies per ``GET /studies`` page (the API's maximum)."""
TRANSIENT_ERRORS = (OSError, http.client.HTTPException)
"""Connection refused, reset or timed out (urllib's URLError is an OSError)."""

Progress = Callable[[int], None]
"""Told how many more bytes of a file were sent (negative when a failed attempt is undone)."""


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Answers a redirect with its own 3xx response: urllib would follow it with the same
    headers, the bearer token among them, to wherever the answer points."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def request(method: str, url: str, body: bytes | Iterable[bytes] | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 60) -> HttpResponse:
    """One HTTP request; any status is returned, not raised, a redirect's (3xx) too: it is
    not followed. An iterable body is streamed (its Content-Length must be in ``headers``)."""
    prepared = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _OPENER.open(prepared, timeout=timeout) as response:
            return HttpResponse(response.status, response.read())
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, error.read())


def multipart_form(fields: Mapping[str, str], file_name: str) -> tuple[bytes, bytes, str]:
    """What surrounds a file in a multipart/form-data body for an S3 presigned POST (fields
    first, the file last): the bytes before the file, the bytes after it, the content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{file_name}"\r\nContent-Type: application/dicom\r\n\r\n'.encode())
    return b"".join(parts), f"\r\n--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def sha256_base64(data: bytes | Path) -> str:
    """The checksum a presigned POST asks for: base64 of the SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    if isinstance(data, bytes):
        digest.update(data)
    else:
        with data.open("rb") as stream:
            while chunk := stream.read(UPLOAD_CHUNK):
                digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def _streamed(head: bytes, path: Path, tail: bytes, progress: Progress) -> Iterator[bytes]:
    """A file's multipart body read from disk a chunk at a time, reporting what was sent."""
    yield head
    with path.open("rb") as stream:
        while chunk := stream.read(UPLOAD_CHUNK):
            yield chunk
            progress(len(chunk))
    yield tail


def _loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_api_base(url: str) -> str:
    """``url`` without a trailing slash, once it is one a bearer token may be sent to: https,
    or http to this machine (a token sent in clear elsewhere can be read on the way).
    :class:`ValueError` otherwise."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"the API URL {url!r} names no host")
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname)):
        raise ValueError(f"the API URL {url!r} must be https (plain http only to localhost)")
    return url.rstrip("/")


API_VARIABLE = "PACS_VALIDATOR_API"
TOKEN_VARIABLE = "PACS_VALIDATOR_TOKEN"


class PacsClient:
    def __init__(self, api_base: str, jobs: int = 8, token: str | None = None,
                 retries: int = 4, backoff: float = 0.5) -> None:
        self.api_base = checked_api_base(api_base)
        self.jobs = jobs
        self.token = token
        self.retries = retries
        self.backoff = backoff

    @classmethod
    def from_environment(cls, api: str | None, jobs: int = 8) -> PacsClient:
        """The client of the API at ``api``, else at ``$PACS_VALIDATOR_API``, with the bearer
        token of ``$PACS_VALIDATOR_TOKEN`` when it is set: what every command that talks to
        the API (the uploader, the gateway) reads. ValueError when there is no API, or the
        token may not be sent to it (plain http to another machine)."""
        api = api or os.environ.get(API_VARIABLE)
        if not api:
            raise ValueError(f"no API: give --api URL or set {API_VARIABLE}")
        return cls(api, jobs=jobs, token=os.environ.get(TOKEN_VARIABLE) or None)

    def _retrying(self, send: Callable[[], HttpResponse]) -> HttpResponse:
        """``send()``, again after a 5xx answer or a connection failure, up to ``retries``
        more times, waiting ``backoff`` seconds doubled each time (with jitter, so parallel
        uploads that failed together do not retry together); the last outcome stands."""
        attempt = 0
        while True:
            try:
                response = send()
                if response.status < 500 or attempt >= self.retries:
                    return response
            except TRANSIENT_ERRORS:
                if attempt >= self.retries:
                    raise
            time.sleep(self.backoff * 2**attempt * random.uniform(0.5, 1.0))
            attempt += 1

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> HttpResponse:
        """A call to the API (retried when transient), with the bearer token if there is one.
        A redirect raises :class:`ApiError`: the API's own URL is the one to give."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        response = self._retrying(lambda: request(method, self.api_base + path, data, headers))
        if 300 <= response.status < 400:
            raise ApiError(response.status, "the API answered with a redirect, which is not "
                                            "followed: give the API's own URL")
        return response

    def declare(self, files: Mapping[str, int], deadline_seconds: int | None = None,
                client_token: str | None = None) -> dict[str, Any]:
        """``POST /upload`` for {name: size}; the body of the answer (study id and the
        upload forms). ``deadline_seconds`` asks for less time than the deployment's upload
        deadline. With ``client_token``, declaring the same files again names the study the
        first declaration made (200 rather than 201), so that a client that lost the first
        answer makes no second study; :class:`ApiError` (409) for the token used with other
        files."""
        declaration: dict[str, Any] = {
            "files": [{"name": n, "size": s} for n, s in files.items()]}
        if deadline_seconds is not None:
            declaration["deadline_seconds"] = deadline_seconds
        if client_token is not None:
            declaration["client_token"] = client_token
        response = self._api("POST", "/upload", declaration)
        if response.status not in (200, 201):
            raise ApiError(response.status, response.body.decode(errors="replace"))
        declared: dict[str, Any] = response.json()
        return declared

    def forms(self, study_id: str, names: Sequence[str]) -> dict[str, Any]:
        """``POST /upload/{id}`` for ``names`` (at most :data:`NAMES_PER_FORM_REQUEST`
        declared files of a study still taking files): the 200 body, whose ``uploads`` are
        fresh per-file forms in the order asked. :class:`ApiError` for a study that is
        unknown (404) or takes no more files (409), or for a name it did not declare (400)."""
        response = self._api("POST", f"/upload/{study_id}", {"names": list(names)})
        if response.status != 200:
            raise ApiError(response.status, response.body.decode(errors="replace"))
        answer: dict[str, Any] = response.json()
        return answer

    def all_forms(self, declared: Mapping[str, Any], names: Sequence[str]
                  ) -> dict[str, dict[str, Any]]:
        """{name: form} for every name: the forms the declaration answered, the others asked
        for :data:`NAMES_PER_FORM_REQUEST` at a time."""
        forms = {str(form["name"]): form for form in declared["uploads"]}
        missing = [name for name in names if name not in forms]
        for start in range(0, len(missing), NAMES_PER_FORM_REQUEST):
            answer = self.forms(str(declared["study_id"]),
                                missing[start:start + NAMES_PER_FORM_REQUEST])
            forms.update((str(form["name"]), form) for form in answer["uploads"])
        return forms

    @staticmethod
    def post_file(form: Mapping[str, Any], name: str, data: bytes | Path,
                  progress: Progress | None = None) -> HttpResponse:
        """Send one file (its bytes, or streamed from its path) through a presigned POST
        form, once; S3 answers 204 (400 for a size the form does not allow).

        A per-file form carries its own key; with a study-wide form (a deployment with
        ``StudyWideForms``) the file's key is the form's ``key_prefix`` followed by its
        name."""
        fields = dict(form["fields"])
        if "key_prefix" in form:
            fields["key"] = str(form["key_prefix"]) + name
        if CHECKSUM_ALGORITHM_FIELD in fields:
            fields[CHECKSUM_FIELD] = sha256_base64(data)
        head, tail, content_type = multipart_form(fields, name)
        if isinstance(data, bytes):
            body: bytes | Iterable[bytes] = head + data + tail
            size = len(data)
        else:
            size = data.stat().st_size
            body = _streamed(head, data, tail, progress or (lambda sent: None))
        length = len(head) + size + len(tail)
        headers = {"Content-Type": content_type, "Content-Length": str(length)}
        response = request("POST", str(form["url"]), body, headers)
        if isinstance(data, bytes) and progress is not None:
            progress(size)
        return response

    def send_file(self, form: Mapping[str, Any], name: str, data: bytes | Path,
                  progress: Progress | None = None) -> None:
        """:meth:`post_file`, retried when transient; raises :class:`ApiError` when S3
        refuses the file (403 when the form expired). Bytes reported by a failed attempt are
        taken back, the last one's too when the file could not be sent."""
        sent = 0

        def count(size: int) -> None:
            nonlocal sent
            sent += size
            if progress is not None:
                progress(size)

        def attempt() -> HttpResponse:
            nonlocal sent
            if sent:
                count(-sent)
            return self.post_file(form, name, data, count)

        try:
            response = self._retrying(attempt)
        except TRANSIENT_ERRORS:
            count(-sent)
            raise
        if response.status not in (200, 201, 204):
            count(-sent)
            raise ApiError(response.status, response.body.decode(errors="replace"))

    def upload(self, files: Mapping[str, bytes]) -> str:
        """Declare and upload a study through its per-file forms, ``jobs`` files at a time;
        its id. The names are the API's own (:func:`upload_names`)."""
        declared = self.declare({name: len(data) for name, data in files.items()})
        forms = self.all_forms(declared, list(files))
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(lambda name: self.send_file(forms[name], name, files[name]), files))
        return str(declared["study_id"])

    def status(self, study_id: str, limit: int | None = None, next_token: str | None = None
               ) -> HttpResponse:
        """``GET /status/{id}``: the study and one page of its files."""
        query = urllib.parse.urlencode({k: v for k, v in (("limit", limit),
                                                          ("next", next_token)) if v})
        return self._api("GET", f"/status/{study_id}" + (f"?{query}" if query else ""))

    def full_status(self, study_id: str) -> dict[str, Any]:
        """The status document with every file's verdict, its pages joined (``next`` null)."""
        document: dict[str, Any] | None = None
        token: str | None = None
        while True:
            response = self.status(study_id, limit=STATUS_PAGE, next_token=token)
            if response.status != 200:
                raise ApiError(response.status, response.body.decode(errors="replace"))
            page: dict[str, Any] = response.json()
            if document is None:
                document = page
            else:
                document["files"].extend(page["files"])
            token = page["next"]
            if not token:
                document["next"] = None
                return document

    def studies(self, limit: int | None = None, next_token: str | None = None,
                study_instance_uid: str | None = None) -> HttpResponse:
        """``GET /studies``: one page of the caller's studies, newest first."""
        query = urllib.parse.urlencode({k: v for k, v in (
            ("limit", limit), ("next", next_token),
            ("study_instance_uid", study_instance_uid)) if v})
        return self._api("GET", "/studies" + (f"?{query}" if query else ""))

    def list_studies(self, at_most: int, study_instance_uid: str | None = None
                     ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``at_most`` of the caller's studies (only those of ``study_instance_uid``
        when given), pages followed; and whether the API has more. A search's page may be
        empty and still have a next one: the pages are followed to the last."""
        studies: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            response = self.studies(min(at_most - len(studies), LIST_PAGE), token,
                                    study_instance_uid)
            if response.status != 200:
                raise ApiError(response.status, response.body.decode(errors="replace"))
            page: dict[str, Any] = response.json()
            studies.extend(page["studies"])
            token = page["next"]
            if not token or len(studies) >= at_most:
                return studies, bool(token)

    def wait(self, study_id: str, timeout: float = 120, interval: float = 0.25) -> dict[str, Any]:
        """Poll ``GET /status`` (one file per page: the study is what is watched) until the
        study reaches a terminal state; its status with the first page of files."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.status(study_id, limit=1)
            if response.status != 200:
                raise ApiError(response.status, response.body.decode(errors="replace"))
            body: dict[str, Any] = response.json()
            if body["state"] in TERMINAL_STATES:
                final: dict[str, Any] = self.status(study_id).json()
                return final
            if time.monotonic() > deadline:
                raise TimeoutError(f"study {study_id} still {body['state']} after {timeout} s")
            time.sleep(interval)


def studies_in(folder: Path) -> dict[str, list[Path]]:
    """The DICOM files below ``folder`` grouped by StudyInstanceUID (headers only are read;
    unreadable files are left out), ready to upload one study per ``PacsClient.upload``."""
    return group_by_study_uid(sorted(p for p in folder.rglob("*") if p.is_file()))[0]


def group_by_study_uid(paths: Iterable[Path]) -> tuple[dict[str, list[Path]], dict[Path, str]]:
    """Files grouped by the StudyInstanceUID of their header, and the files left out, each
    with why: not readable, not DICOM, or without a StudyInstanceUID."""
    studies: dict[str, list[Path]] = {}
    left_out: dict[Path, str] = {}
    for path in paths:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True,
                                     specific_tags=["StudyInstanceUID"])
        except OSError as error:
            left_out[path] = f"cannot be read: {error.strerror or type(error).__name__}"
            continue
        except (InvalidDicomError, ValueError):
            left_out[path] = "not DICOM"
            continue
        uid = header.get("StudyInstanceUID")
        if uid:
            studies.setdefault(str(uid), []).append(path)
        else:
            left_out[path] = "no StudyInstanceUID"
    return studies, left_out


def upload_names(paths: Sequence[Path]) -> dict[str, Path]:
    """{name: path} for the files of one study: each file named as the API will name it
    (:func:`safe_name`), names made unique by the folder, then by a number."""
    names: dict[str, Path] = {}
    for path in paths:
        name = safe_name(path.name)
        if name in names:
            name = safe_name(f"{path.parent.name}-{path.name}")
        number = 2
        while name in names:
            name, number = safe_name(f"{number}-{path.name}"), number + 1
        names[name] = path
    return names


def read_files(paths: list[Path]) -> dict[str, bytes]:
    """{unique name: bytes} for a list of files (names as :func:`upload_names` gives them)."""
    return {name: path.read_bytes() for name, path in upload_names(paths).items()}
