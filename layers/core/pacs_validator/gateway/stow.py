"""STOW-RS (DICOMweb Store, PS3.18 10.5): the gateway's HTTP door, into the same intake as
C-STORE.

``POST /studies`` and ``POST /studies/{StudyInstanceUID}`` take a ``multipart/related;
type="application/dicom"`` body. It is read part by part as it arrives
(:mod:`~pacs_validator.gateway.multipart`), each part written to a file beside the spool's
copies and handed to :class:`~pacs_validator.gateway.intake.Intake` before the next is read:
a request of any size costs one instance of disk at a time. Each request is one
"association" to the spool, ended when it is answered, so its study parts may close.

The answer is the Store Instances Response Module (PS3.18 Annex I) in DICOM JSON: each
instance's DIMSE status as its Warning or Failure Reason, and its Error Comment (the rule
ids) in a private element of its item, since the module has no text attribute for it.
"""

from __future__ import annotations

import json
import logging
import ssl
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import socket
from typing import Any
from urllib.parse import unquote, urlsplit

from pydicom.dataset import Dataset

from pacs_validator.gateway.http_body import (
    DEFAULT_MAX_BYTES,
    BadFraming,
    BodyTooLarge,
    ChunkedBody,
    LengthRequired,
    SizedBody,
    request_body,
)
from pacs_validator.gateway.intake import Intake, Taken
from pacs_validator.gateway.multipart import MultipartError, read_parts
from pacs_validator.gateway.statuses import WARNING_DOES_NOT_MATCH
from pacs_validator.gateway.tokens import BearerTokens

logger = logging.getLogger(__name__)

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
PRIVATE_CREATOR = "PACS_VALIDATOR"
PRIVATE_GROUP = 0x0009
ERROR_COMMENT_ELEMENT = 0x02
"""(0009,xx02) LO in the ``PACS_VALIDATOR`` block: the rule ids, as C-STORE's Error
Comment (0000,0902) carries them."""
IDLE_SECONDS = 60
"""A connection that sends nothing for this long is closed: a stalled client does not hold
a thread for ever."""
LISTEN_BACKLOG = 1024
"""Connections queued before they are accepted, as for C-STORE: a burst of senders is
queued, not reset."""
DEFAULT_MAX_CONNECTIONS = 16


@dataclass(frozen=True)
class StowOptions:
    """How the HTTP door listens (``--http-port``, ``--stow-*``); host and TLS are the
    gateway's."""

    port: int
    tokens: BearerTokens
    max_bytes: int = DEFAULT_MAX_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Connections served at once (a thread each); the next wait in the listen queue."""


@dataclass(frozen=True)
class Refusal:
    """A request answered without its body: an HTTP status and why."""

    status: HTTPStatus
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Admitted:
    """A request let in: who sent it, the study it targets (None: any), and its body."""

    sender: str
    study_instance_uid: str | None
    boundary: str
    body: SizedBody | ChunkedBody


class UnsupportedPart(Exception):
    """A part is not ``application/dicom``."""


def study_target(path: str) -> tuple[bool, str | None]:
    """Whether ``path`` is a store resource, and the StudyInstanceUID it names."""
    segments = [unquote(s) for s in urlsplit(path).path.strip("/").split("/")]
    if segments == ["studies"]:
        return True, None
    if len(segments) == 2 and segments[0] == "studies" and segments[1]:
        return True, segments[1]
    return False, None


def reference(taken: Taken) -> Dataset:
    """The item naming one instance: its SOP Instance Reference Macro (the UIDs it was read
    with, when it could be read) and its rule ids."""
    item = Dataset()
    if taken.summary.sop_class_uid:
        item.ReferencedSOPClassUID = taken.summary.sop_class_uid
    if taken.summary.sop_instance_uid:
        item.ReferencedSOPInstanceUID = taken.summary.sop_instance_uid
    if taken.answer.comment:
        block = item.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(ERROR_COMMENT_ELEMENT, "LO", taken.answer.comment)
    return item


def store_response(taken: Sequence[Taken]) -> tuple[HTTPStatus, Dataset]:
    """The HTTP status and the Store Instances Response Module for a request's instances:
    200 when all were kept (with warnings or not), 202 when some failed, 409 when all did."""
    accepted, failed = [], []
    for one in taken:
        item = reference(one)
        if one.answer.accepted:
            item.RetrieveURL = None  # type 2: this gateway retrieves nothing
            if one.answer.status == WARNING_DOES_NOT_MATCH:
                item.WarningReason = one.answer.status
            accepted.append(item)
        else:
            item.FailureReason = one.answer.status
            failed.append(item)
    response = Dataset()
    response.RetrieveURL = None
    if accepted:
        response.ReferencedSOPSequence = accepted
    if failed:
        response.FailedSOPSequence = failed
    status = (HTTPStatus.OK if not failed else
              HTTPStatus.ACCEPTED if accepted else HTTPStatus.CONFLICT)
    return status, response


def multipart_boundary(content_type: str | None) -> str | Refusal:
    """The boundary of a ``multipart/related; type="application/dicom"`` body; a refusal
    for any other media type (415) or a multipart without a boundary (400)."""
    header = Message()
    header["Content-Type"] = content_type or "application/octet-stream"
    root_type = str(header.get_param("type") or "").lower()
    if header.get_content_type() != "multipart/related" or root_type != DICOM:
        return Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                       f'only multipart/related; type="{DICOM}" is stored')
    boundary = header.get_boundary()
    if not boundary:
        return Refusal(HTTPStatus.BAD_REQUEST, "the multipart body has no boundary")
    return boundary


class StowServer(ThreadingHTTPServer):
    """The HTTP server: a thread per connection, at most ``max_connections`` at once, TLS
    negotiated in that thread."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, host: str, intake: Intake, options: StowOptions,
                 tls: ssl.SSLContext | None) -> None:
        self.intake = intake
        self.options = options
        self.tls = tls
        self.parts_folder: Path = intake.spool.incoming
        """Beside the spool's own copies: the same disk, and emptied when a gateway starts."""
        self.slots = threading.BoundedSemaphore(options.max_connections)
        super().__init__((host, options.port), StowHandler)

    @classmethod
    def start(cls, host: str, intake: Intake, options: StowOptions,
              tls: ssl.SSLContext | None) -> StowServer:
        """Listen in the background; :meth:`stop` stops it."""
        server = cls(host, intake, options, tls)
        threading.Thread(target=server.serve_forever, name="stow-rs", daemon=True).start()
        return server

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve a connection once a slot is free; until then, it is not accepted and later
        callers wait in the kernel's queue: a burst is served in turn, not refused."""
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Negotiate TLS here, in the connection's thread: a slow handshake holds up no
        other caller."""
        if self.tls is not None:
            request.settimeout(IDLE_SECONDS)  # a client that never completes it is let go
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: socket | tuple[bytes, socket], client_address: Any) -> None:
        """A connection that failed (a dropped client, a bad handshake): its type only, as
        an exception's text might quote what was sent."""
        logger.warning("stow-rs connection failed",
                       extra={"error": type(sys.exc_info()[1]).__name__})


class StowHandler(BaseHTTPRequestHandler):
    """One connection's requests (HTTP/1.1, kept alive between answers)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS
    server: StowServer

    def do_POST(self) -> None:
        admitted = self.admit()
        if isinstance(admitted, Refusal):
            self.refuse(admitted)
            return
        self.store(admitted)

    def refuse_method(self) -> None:
        """Any method but POST, refused by :meth:`admit`: 404 off the store resources, 405
        on them."""
        refusal = self.admit()
        assert isinstance(refusal, Refusal)  # admit lets in POST only
        self.refuse(refusal)

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse_method

    def handle_expect_100(self) -> bool:
        """A client that waits for ``100 Continue`` is refused before it sends its body."""
        admitted = self.admit()
        if isinstance(admitted, Refusal):
            self.refuse(admitted)
            return False
        return super().handle_expect_100()

    def admit(self) -> Admitted | Refusal:
        """The checks a request passes before its body is read: resource, method, token,
        media type, size."""
        known, study_instance_uid = study_target(self.path)
        if not known:
            return Refusal(HTTPStatus.NOT_FOUND, "no such resource")
        if self.command != "POST":
            return Refusal(HTTPStatus.METHOD_NOT_ALLOWED, "only POST stores", {"Allow": "POST"})
        sender = self.server.options.tokens.label_for(self.headers.get("Authorization"))
        if sender is None:
            return Refusal(HTTPStatus.UNAUTHORIZED, "a valid bearer token is required",
                           {"WWW-Authenticate": 'Bearer realm="pacs-validator"'})
        boundary = multipart_boundary(self.headers.get("Content-Type"))
        if isinstance(boundary, Refusal):
            return boundary
        try:
            body = request_body(self.rfile, self.headers, self.server.options.max_bytes)
        except BodyTooLarge:
            return self.too_large()
        except LengthRequired:
            return Refusal(HTTPStatus.LENGTH_REQUIRED, "Content-Length or chunked is required")
        except BadFraming as exc:
            return Refusal(HTTPStatus.BAD_REQUEST, str(exc))
        return Admitted(sender, study_instance_uid, boundary, body)

    def too_large(self) -> Refusal:
        return Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"the body is longer than {self.server.options.max_bytes} bytes")

    def store(self, admitted: Admitted) -> None:
        """Read, judge and keep each part in turn, then answer for them all."""
        request = f"stow-{uuid.uuid4().hex}"
        intake = self.server.intake
        taken: list[Taken] = []
        try:
            for part in read_parts(admitted.body, admitted.boundary, self.server.parts_folder):
                try:
                    if part.content_type != DICOM:
                        raise UnsupportedPart
                    taken.append(intake.take(part.path, admitted.sender, request,
                                             admitted.study_instance_uid))
                finally:
                    part.path.unlink(missing_ok=True)
        except BodyTooLarge:
            self.refuse(self.too_large(), admitted.sender, len(taken))
            return
        except UnsupportedPart:
            self.refuse(Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                f"a part is not {DICOM}"), admitted.sender, len(taken))
            return
        except (MultipartError, BadFraming) as exc:
            self.refuse(Refusal(HTTPStatus.BAD_REQUEST, str(exc)), admitted.sender, len(taken))
            return
        finally:
            intake.ended(request)
        if not taken:
            self.refuse(Refusal(HTTPStatus.BAD_REQUEST, "the body has no part"), admitted.sender)
            return
        status, response = store_response(taken)
        self.answer(status, json.dumps(response.to_json_dict()).encode(), DICOM_JSON)
        logger.info("stow-rs request answered",
                    extra={"calling_ae": admitted.sender, "status": status.value,
                           "instances": len(taken)})

    def refuse(self, refusal: Refusal, sender: str | None = None, taken: int = 0) -> None:
        """Answer ``refusal`` and close the connection: the rest of its body, if any, is
        never read."""
        self.close_connection = True
        body = json.dumps({"error": refusal.reason}).encode()
        self.answer(refusal.status, body, "application/json",
                    {**refusal.headers, "Connection": "close"})
        logger.warning("stow-rs request refused",
                       extra={"calling_ae": sender, "status": refusal.status.value,
                              "instances": taken})

    def answer(self, status: HTTPStatus, body: bytes, content_type: str,
               headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Nothing: :meth:`store` and :meth:`refuse` log each request by its sender's label;
        the request line holds a StudyInstanceUID."""

    def log_message(self, format: str, *args: Any) -> None:
        """The server's own complaints (a malformed request line), without what was sent."""
        logger.warning("stow-rs: a request was refused by the HTTP server (%s)", format)
