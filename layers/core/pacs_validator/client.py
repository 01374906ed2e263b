"""A small HTTP client for the deployed API: declare, upload through presigned POSTs, wait.

Standard library and pydicom only, so the demo, the end-to-end tests and users' scripts
share one way of talking to the service, on AWS or on LocalStack alike.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

TERMINAL_STATES = frozenset({"STORED", "REJECTED", "FAILED", "INCOMPLETE"})


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


def request(method: str, url: str, body: bytes | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 60) -> HttpResponse:
    """One HTTP request; any status is returned, not raised."""
    prepared = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(prepared, timeout=timeout) as response:
            return HttpResponse(response.status, response.read())
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, error.read())


def multipart_form(fields: Mapping[str, str], file_name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body for an S3 presigned POST (fields first, the file last)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{file_name}"\r\nContent-Type: application/dicom\r\n\r\n'.encode())
    parts.append(data + f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class PacsClient:
    def __init__(self, api_base: str, jobs: int = 8) -> None:
        self.api_base = api_base.rstrip("/")
        self.jobs = jobs

    def declare(self, files: Mapping[str, int], deadline_seconds: int | None = None
                ) -> dict[str, Any]:
        """``POST /upload`` for {name: size}; the 201 body (study id and the upload form).
        ``deadline_seconds`` asks for less time than the deployment's upload deadline."""
        declaration: dict[str, Any] = {
            "files": [{"name": n, "size": s} for n, s in files.items()]}
        if deadline_seconds is not None:
            declaration["deadline_seconds"] = deadline_seconds
        body = json.dumps(declaration)
        response = request("POST", f"{self.api_base}/upload", body.encode(),
                           {"Content-Type": "application/json"})
        if response.status != 201:
            raise ApiError(response.status, response.body.decode(errors="replace"))
        declared: dict[str, Any] = response.json()
        return declared

    @staticmethod
    def post_file(form: Mapping[str, Any], name: str, data: bytes) -> HttpResponse:
        """Send one file through a presigned POST form; S3 answers 204 (400 over the cap).

        With the study-wide form (``declare(...)["upload"]``) the file's key is the form's
        ``key_prefix`` followed by its name; a per-file form carries its own key."""
        fields = dict(form["fields"])
        if "key_prefix" in form:
            fields["key"] = str(form["key_prefix"]) + name
        body, content_type = multipart_form(fields, name, data)
        return request("POST", str(form["url"]), body, {"Content-Type": content_type})

    def upload(self, files: Mapping[str, bytes]) -> str:
        """Declare and upload a study through its study-wide form, ``jobs`` files at a
        time; its id."""
        declared = self.declare({name: len(data) for name, data in files.items()})

        def send(name: str) -> None:
            response = self.post_file(declared["upload"], name, files[name])
            if response.status not in (200, 201, 204):
                raise ApiError(response.status, response.body.decode(errors="replace"))

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(send, files))
        return str(declared["study_id"])

    def status(self, study_id: str, limit: int | None = None, next_token: str | None = None
               ) -> HttpResponse:
        """``GET /status/{id}``: the study and one page of its files."""
        query = urllib.parse.urlencode({k: v for k, v in (("limit", limit),
                                                          ("next", next_token)) if v})
        return request("GET", f"{self.api_base}/status/{study_id}" + (f"?{query}" if query
                                                                      else ""))

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
    studies: dict[str, list[Path]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            uid = pydicom.dcmread(path, stop_before_pixels=True).get("StudyInstanceUID")
        except (InvalidDicomError, OSError, ValueError):
            continue
        if uid:
            studies.setdefault(str(uid), []).append(path)
    return studies


def read_files(paths: list[Path]) -> dict[str, bytes]:
    """{unique name: bytes} for a list of files (names made unique by their folder)."""
    files: dict[str, bytes] = {}
    for path in paths:
        name = path.name if path.name not in files else f"{path.parent.name}-{path.name}"
        files[name] = path.read_bytes()
    return files
