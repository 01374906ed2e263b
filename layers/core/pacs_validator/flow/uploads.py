"""Declaring a study, handing out its upload forms, and reading it for a caller: the
decisions behind ``POST /upload``, ``POST /upload/{id}`` and ``GET /status/{id}``.

The API's handler parses the HTTP request, calls these and turns what they return or raise
into an answer; what a caller may declare, which forms a study gets and who may read it
are decided here, against the ports, like the rest of a study's fate. Nothing here reads
DICOM: the API's cold start loads no pydicom.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pacs_validator.contract.auth import Caller
from pacs_validator.contract.keys import (
    incoming_key,
    incoming_prefix,
    manifest_key,
    new_study_id,
    study_id_for_token,
)
from pacs_validator.contract.records import StudyRecord
from pacs_validator.contract.upload_request import (
    DeclarationTooLarge,
    DeclaredFile,
    PerFileFormsOnly,
    StudyClosedError,
    TokenReused,
    TooManyOpenStudies,
    UndeclaredNames,
    UnreadableStudy,
    client_token,
    declaration_fingerprint,
    form_expiry,
    manifest_document,
    parse_form_request,
    parse_upload_request,
    renewed_form_expiry,
    requested_deadline,
)
from pacs_validator.flow.manifests import Manifests
from pacs_validator.flow.ports import ObjectStore, StatusStore, UploadForms

API_MANIFESTS_KEPT = 4
"""Studies whose declared files one API environment keeps (:class:`Manifests`). The
largest manifest (20,000 names of 128 characters, 3.2 MB) is 6.7 MB in memory, so four stay
within a tenth of the function's 256 MB; a study asking for its forms 100 at a time mostly
meets one environment."""


@dataclass(frozen=True)
class UploadRules:
    """What the deployment lets a caller declare and how long its forms last."""

    max_upload_bytes: int
    max_study_bytes: int
    max_files_per_study: int
    max_open_studies: int
    """0: no cap."""
    upload_deadline_seconds: int
    min_upload_deadline_seconds: int
    presign_expiry_seconds: int
    per_file_forms_max: int
    """Per-file forms ``POST /upload`` answers with (the first declared files)."""
    study_wide_forms: bool


@dataclass(frozen=True)
class Forms:
    """A study's upload forms: per-file forms, and the study-wide form when the deployment
    hands it out."""

    study_id: str
    expires_in: int
    max_bytes: int
    files: int
    uploads: list[dict[str, Any]]
    upload: dict[str, Any] | None

    def answer(self) -> dict[str, Any]:
        """The forms as ``POST /upload`` and ``POST /upload/{id}`` answer them."""
        answer: dict[str, Any] = {"study_id": self.study_id, "expires_in": self.expires_in,
                                  "max_bytes": self.max_bytes, "files": self.files,
                                  "uploads": self.uploads}
        if self.upload is not None:
            answer["upload"] = self.upload
        return answer


@dataclass(frozen=True)
class Declaration:
    """What ``POST /upload`` made of a declaration: the study's forms, and whether this
    request created the study (201) or declared again what a client token declared before
    (200)."""

    forms: Forms
    created: bool


class Uploads:
    """Declares studies, hands out their forms and reads them for their owners, over the
    status table, the uploads bucket and its form signer."""

    def __init__(self, rules: UploadRules, table: StatusStore, uploads: ObjectStore,
                 forms: UploadForms) -> None:
        self.rules = rules
        self.table = table
        self.uploads = uploads
        self.forms = forms
        self.manifests = Manifests(uploads, kept=API_MANIFESTS_KEPT)

    def declare(self, caller: Caller, body: Any, now: int) -> Declaration:
        """The study of the files ``body`` declares (``POST /upload``), owned by ``caller``:
        a new one, with its manifest, its status record (AWAITING_UPLOAD) and forms for its
        first declared files; or, for a ``client_token`` the caller declared the same files
        with before, that study again, with fresh forms while it takes files. Refused over
        the size caps, for a token declared with other files, or when a new study would
        be one more than the caller may have open."""
        rules = self.rules
        files = parse_upload_request(body, rules.max_files_per_study)
        deadline = requested_deadline(body, rules.min_upload_deadline_seconds,
                                      rules.upload_deadline_seconds)
        token = client_token(body)
        self._check_sizes(files)
        if token is None:
            self._check_open_studies(caller)
            study_id = new_study_id()
            self._create(caller, study_id, files, deadline)
            return Declaration(self._first_forms(study_id, files, deadline), created=True)
        return self._declare_with_token(caller, token, files, deadline, now)

    def renew(self, caller: Caller, study_id: str, body: Any, now: int) -> Forms:
        """Fresh forms for a study still taking files (``POST /upload/{id}``):
        ``{"names": [...]}`` asks per-file forms for declared files by name; no body, or
        ``{}``, the study-wide form alone, where the deployment hands it out. The forms
        expire at the study's upload deadline at the latest: a file they let in is never
        late."""
        names = parse_form_request(body)
        if names is None and not self.rules.study_wide_forms:
            raise PerFileFormsOnly()
        study = self.readable(caller, study_id)
        expires_in = renewed_form_expiry(study.state, study.deadline, now,
                                         self.rules.presign_expiry_seconds)
        declared = self.manifests.of(study_id)
        files, places = (declared.files, declared.places) if declared else ((), {})
        asked = names or []
        undeclared = sum(1 for name in asked if name not in places)
        if undeclared:
            raise UndeclaredNames(undeclared, len(asked))
        return self._forms(study_id, study.expected, study.largest_declared, expires_in,
                           [files[places[name]] for name in asked])

    def readable(self, caller: Caller, study_id: str) -> StudyRecord:
        """The study, when ``caller`` may read it (its owner, or an admin)."""
        study = self.table.study(study_id)
        if study is None or not caller.may_read(study.owner):
            raise UnreadableStudy(exists=study is not None)
        return study

    def _declare_with_token(self, caller: Caller, token: str, files: list[DeclaredFile],
                            deadline: int, now: int) -> Declaration:
        """The study of ``caller``'s ``token``, whose id is derived from both: made by the
        first declaration to bind the id (``claim_declaration``, before any manifest is
        written, so that a racing declaration of other files changes nothing), named again
        for the same declaration, refused for another. Only a study not made yet counts
        against the caller's cap of open studies."""
        study_id = study_id_for_token(caller.identity, token)
        known = self.table.study(study_id)
        if known is None:
            self._check_open_studies(caller)
        fingerprint = declaration_fingerprint(files, deadline)
        if self.table.claim_declaration(study_id, fingerprint) != fingerprint:
            raise TokenReused()
        if known is None and self._create(caller, study_id, files, deadline):
            return Declaration(self._first_forms(study_id, files, deadline), created=True)
        study = known or self.readable(caller, study_id)  # a racing declaration created it
        return Declaration(self._repeated_forms(study, files, now), created=False)

    def _check_open_studies(self, caller: Caller) -> None:
        """Refuse a new study to a caller that has as many open as it may."""
        cap = self.rules.max_open_studies
        if cap and self.table.open_studies(caller.identity, cap) >= cap:
            raise TooManyOpenStudies(cap)

    def _create(self, caller: Caller, study_id: str, files: list[DeclaredFile],
                deadline: int) -> bool:
        """The study's manifest, then its status record (so that whoever reads the record
        finds the manifest); False when a study of this id was created first."""
        self.uploads.put_json(manifest_key(study_id), manifest_document(files), indent=None)
        return self.table.create(study_id, expected=len(files), deadline_seconds=deadline,
                                 owner=caller.identity,
                                 largest_declared=max(f.size for f in files))

    def _first_forms(self, study_id: str, files: list[DeclaredFile], deadline: int) -> Forms:
        """A new study's forms: for its first declared files, expiring at its deadline at
        the latest."""
        rules = self.rules
        return self._forms(study_id, len(files), max(f.size for f in files),
                           form_expiry(rules.presign_expiry_seconds, deadline),
                           files[:rules.per_file_forms_max])

    def _repeated_forms(self, study: StudyRecord, files: list[DeclaredFile], now: int
                        ) -> Forms:
        """The forms of a declaration made again: as the first one's, fresh, while the
        study takes files; none once it takes no more (``uploads`` empty, ``expires_in``
        0), where its id is what the client needs, to follow it."""
        rules = self.rules
        try:
            expires_in = renewed_form_expiry(study.state, study.deadline, now,
                                             rules.presign_expiry_seconds)
        except StudyClosedError:
            return Forms(study.study_id, 0, self._max_bytes(study.largest_declared),
                         study.expected, [], None)
        return self._forms(study.study_id, study.expected, study.largest_declared,
                           expires_in, files[:rules.per_file_forms_max])

    def _max_bytes(self, largest_declared: int | None) -> int:
        """The most a study-wide form lets in per file: the largest size the study declared
        (``MaxUploadBytes`` for a study recorded before its item kept it)."""
        return largest_declared or self.rules.max_upload_bytes

    def _check_sizes(self, files: list[DeclaredFile]) -> None:
        """Refuse a declaration over the size caps: of one file, or of the whole study."""
        rules = self.rules
        too_large = sum(1 for f in files if f.size > rules.max_upload_bytes)
        if too_large:
            raise DeclarationTooLarge(f"{too_large} file(s) exceed the cap of "
                                      f"{rules.max_upload_bytes} bytes")
        if sum(f.size for f in files) > rules.max_study_bytes:
            raise DeclarationTooLarge("the declared sizes add up to more than the cap of "
                                      f"{rules.max_study_bytes} bytes per study")

    def _forms(self, study_id: str, expected: int, largest_declared: int | None,
               expires_in: int, files: Iterable[DeclaredFile]) -> Forms:
        """Per-file forms for ``files``, each for its exact key and exact size (what it lets
        in is that file or nothing), and the study-wide form when the deployment hands it
        out: any key under ``incoming/<id>/``, each file at most :meth:`_max_bytes`, so that
        a form for a study of small files lets no large one in."""
        max_bytes = self._max_bytes(largest_declared)
        uploads = [{"name": f.name, **self.forms.presigned_post(
                        incoming_key(study_id, f.name), f.size, expires_in, min_bytes=f.size)}
                   for f in files]
        upload = None
        if self.rules.study_wide_forms:
            prefix = incoming_prefix(study_id)
            upload = {**self.forms.presigned_post(prefix + "${filename}", max_bytes,
                                                  expires_in), "key_prefix": prefix}
        return Forms(study_id, expires_in, max_bytes, expected, uploads, upload)
