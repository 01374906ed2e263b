"""The ``POST /upload`` request: which files a client will upload, checked before any URL
is handed out; and the ``POST /upload/{id}`` request: which declared files a client asks
forms for, and when a study may still have them."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pacs_validator.contract.names import safe_name
from pacs_validator.contract.states import OPEN_STATES, State


class UploadRequestError(ValueError):
    """The request body is not a valid upload declaration (answered with 400)."""


NAMES_PER_FORM_REQUEST = 100
"""Most files one ``POST /upload/{id}`` asks forms for. A per-file form is about 4 KB on AWS
(the function's session token is in its fields and its policy), so the answer stays under
512 KB (``tests-local/unit/test_form_sizes.py``), far below the 6 MB Lambda may answer; a
20,000-file study needs 200 requests."""


CLIENT_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What a ``client_token`` is: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""


class Refusal(Exception):
    """A request the API refuses after it knows the caller: each kind is audited with its
    own outcome word (``audit``) and answered with its own status, and with its ``rule``
    when a client needs to tell it from another refusal of that status."""

    audit = "refused"
    rule: str | None = None


class StudyClosedError(Refusal):
    """A form asked for a study that takes no more files (answered with 409)."""

    audit = "closed"

    def __init__(self, state: str) -> None:
        super().__init__(f"the study is {state} and takes no more files")


class TokenReused(Refusal):
    """A ``client_token`` already used by this caller for another declaration (answered
    with 409): other files, or another deadline."""

    audit = "token-reused"
    rule = "upload.token-reused"

    def __init__(self) -> None:
        super().__init__("this client_token was used for another declaration (other files "
                         "or another deadline): send the first declaration again, or use "
                         "a new token for a new study")


class DeclarationTooLarge(Refusal):
    """A declared file over the size cap, or a study over its total (answered with 413)."""

    audit = "too-large"


class TooManyOpenStudies(Refusal):
    """The caller has as many studies open as it may (answered with 429)."""

    audit = "too-many-open"

    def __init__(self, cap: int) -> None:
        super().__init__(f"this caller has {cap} studies open, the most it may: finish "
                         "them, or wait for their deadlines, before declaring another")


class UndeclaredNames(Refusal):
    """Forms asked for names the study did not declare (answered with 400): how many, not
    which, as a name can carry a patient's."""

    audit = "undeclared"

    def __init__(self, undeclared: int, asked: int) -> None:
        super().__init__(f"{undeclared} of the {asked} names asked for were not declared "
                         "for this study")


class UnreadableStudy(Refusal):
    """No study the caller may read has this id (answered with 404, exactly as for an
    unknown id, so an answer never tells another caller that the study exists)."""

    def __init__(self, exists: bool) -> None:
        super().__init__("no such study")
        self.audit = "refused" if exists else "not-found"


class PerFileFormsOnly(ValueError):
    """The study-wide form asked of a deployment that hands out per-file forms only
    (answered with 400, before any study is read)."""

    def __init__(self) -> None:
        super().__init__('this deployment hands out per-file forms only: ask for them with '
                         '{"names": [file names]}')


@dataclass(frozen=True)
class DeclaredFile:
    name: str
    size: int


def _declared(entry: Any) -> DeclaredFile:
    if not isinstance(entry, dict):
        raise UploadRequestError("each file must be an object with name and size")
    name, size = entry.get("name", entry.get("filename")), entry.get("size")
    if not isinstance(name, str) or not name.strip():
        raise UploadRequestError("each file needs a non-empty string name")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise UploadRequestError("each file needs a positive integer size in bytes")
    return DeclaredFile(name=safe_name(name), size=size)


def parse_upload_request(body: Any, max_files: int) -> list[DeclaredFile]:
    """``{"files":[{"name","size"}, ...]}`` or ``{"filename","size"}`` -> declared files.

    Names are sanitised here, once; two names that sanitise alike are refused, since their
    uploads would land on one key.
    """
    if not isinstance(body, dict):
        raise UploadRequestError("the body must be a JSON object")
    entries = body.get("files", [body])
    if not isinstance(entries, list) or not entries:
        raise UploadRequestError("files must be a non-empty list")
    if len(entries) > max_files:
        raise UploadRequestError(f"at most {max_files} files per study")
    files = [_declared(entry) for entry in entries]
    if len({f.name for f in files}) != len(files):
        raise UploadRequestError("file names must be distinct")
    return files


def client_token(body: Any) -> str | None:
    """The declaration's ``client_token`` (:data:`CLIENT_TOKEN`), None when it has none:
    a client that sends one may send its declaration again, after an answer it did not
    get, without making a second study."""
    if not isinstance(body, dict) or "client_token" not in body:
        return None
    token = body["client_token"]
    if not isinstance(token, str) or not CLIENT_TOKEN.fullmatch(token):
        raise UploadRequestError("client_token must be 1 to 64 letters, digits, '.', '_' "
                                 "or '-'")
    return token


def declaration_fingerprint(files: list[DeclaredFile], deadline_seconds: int) -> str:
    """What tells one declaration from another under a client token: its files (names as
    sanitised, sizes, in order) and its deadline, hashed (SHA-256, hexadecimal) so that
    the status table keeps 64 characters whatever the study's size, and no file name."""
    document = {**manifest_document(files), "deadline_seconds": deadline_seconds}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def manifest_document(files: list[DeclaredFile]) -> dict[str, Any]:
    """The declared files as kept in ``manifests/<id>.json``, outside the status table."""
    return {"files": [{"name": f.name, "size": f.size} for f in files]}


def declared_files(document: dict[str, Any]) -> list[DeclaredFile]:
    """The files of a stored manifest document."""
    return [DeclaredFile(name=str(f["name"]), size=int(f["size"])) for f in document["files"]]


def parse_form_request(body: Any) -> list[str] | None:
    """The names ``POST /upload/{id}`` asks per-file forms for, sanitised as the declaration
    sanitised them and without repeats, in the order asked; None for no body or ``{}``,
    which asks for the study-wide form."""
    if body is None or body == {}:
        return None
    if not isinstance(body, dict) or set(body) != {"names"}:
        raise UploadRequestError('the body must be {"names": [file names]} or empty')
    names = body["names"]
    if not isinstance(names, list) or not 1 <= len(names) <= NAMES_PER_FORM_REQUEST:
        raise UploadRequestError(
            f"names must be a list of 1 to {NAMES_PER_FORM_REQUEST} file names")
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise UploadRequestError("each name must be a non-empty string")
    return list(dict.fromkeys(safe_name(name) for name in names))


def requested_deadline(body: Any, minimum: int, maximum: int) -> int:
    """Seconds the client asks to have for uploading (``deadline_seconds``, from ``minimum``
    to ``maximum``, the deployment's deadline, which is also the default): a client that
    knows its upload is quick learns sooner that a file went missing. The study's forms
    expire at its deadline, so one too short to send a file with is refused; ``minimum``
    yields to a deployment deadline shorter than it."""
    value = body.get("deadline_seconds", maximum) if isinstance(body, dict) else maximum
    lowest = min(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= maximum:
        raise UploadRequestError(
            f"deadline_seconds must be a whole number from {lowest} to {maximum}")
    return value


def form_expiry(expiry_seconds: int, until_deadline: int) -> int:
    """Seconds a study's forms stay valid: ``expiry_seconds``, but never past the study's
    upload deadline (``until_deadline`` seconds away), so a file the form lets in is never
    late."""
    return min(expiry_seconds, until_deadline)


def renewed_form_expiry(state: State, deadline: int | None, now: int,
                        expiry_seconds: int) -> int:
    """Seconds the forms ``POST /upload/{id}`` hands out stay valid (:func:`form_expiry`).
    Only a study still taking files (``state`` AWAITING_UPLOAD or RECEIVING, before its
    ``deadline``) gets any."""
    if state not in OPEN_STATES:
        raise StudyClosedError(state.value)
    until_deadline = (deadline or now) - now
    if until_deadline <= 0:
        raise StudyClosedError(f"{state.value} past its upload deadline")
    return form_expiry(expiry_seconds, until_deadline)
