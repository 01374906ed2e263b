"""An HTTP/1.1 request's body as a stream (RFC 9112 6-7), whichever framing the client
chose, never longer than the gateway allows.

``http.server`` hands a handler the raw connection: a body sent with ``Content-Length`` is
read up to that length and no further (the next request follows it on the connection), and
one sent ``Transfer-Encoding: chunked`` (as DICOMweb clients send large bodies) is decoded
here. A declared length over the cap is refused before a byte of the body is read; a chunked
body is refused at the first byte past it.
"""

from __future__ import annotations

from email.message import Message
from typing import Protocol

DEFAULT_MAX_BYTES = 2 * 1024**3
"""2 GiB: a large CT or a whole-slide study in one request; past it, send it in several."""
MAX_LINE_BYTES = 4096
"""A chunk-size line or a trailer line longer than this is refused."""


class BodyTooLarge(Exception):
    """The body is, or would become, longer than the gateway takes."""


class LengthRequired(Exception):
    """The request says neither how long its body is nor that it is chunked."""


class BadFraming(ValueError):
    """The body's framing is malformed (a bad length, a bad chunk)."""


class Connection(Protocol):
    """What is read from the client (a handler's ``rfile``)."""

    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


class SizedBody:
    """A body of a declared ``Content-Length``."""

    def __init__(self, stream: Connection, length: int) -> None:
        self.stream = stream
        self.remaining = length

    def read(self, size: int, /) -> bytes:
        if self.remaining <= 0:
            return b""
        data = self.stream.read(min(size, self.remaining))
        if not data:
            raise BadFraming("the connection closed before the declared length")
        self.remaining -= len(data)
        return data


class ChunkedBody:
    """A body sent in chunks, decoded, at most ``max_bytes`` long."""

    def __init__(self, stream: Connection, max_bytes: int) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self.read_so_far = 0
        self.left_in_chunk = 0
        self.ended = False

    def read(self, size: int, /) -> bytes:
        if self.ended:
            return b""
        if self.left_in_chunk == 0:
            self.left_in_chunk = self._chunk_size()
            if self.left_in_chunk == 0:
                self._skip_trailers()
                self.ended = True
                return b""
        if self.read_so_far + self.left_in_chunk > self.max_bytes:
            raise BodyTooLarge
        data = self.stream.read(min(size, self.left_in_chunk))
        if not data:
            raise BadFraming("the connection closed inside a chunk")
        self.left_in_chunk -= len(data)
        self.read_so_far += len(data)
        if self.left_in_chunk == 0 and self._line() != b"":
            raise BadFraming("a chunk is longer than its size")
        return data

    def _chunk_size(self) -> int:
        size, _, _extensions = self._line().partition(b";")
        try:
            return int(size.strip(), 16)
        except ValueError:
            raise BadFraming("a chunk size is not hexadecimal") from None

    def _skip_trailers(self) -> None:
        while self._line():
            pass

    def _line(self) -> bytes:
        line = self.stream.readline(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
            raise BadFraming("a chunk line is too long or cut off")
        return line.rstrip(b"\r\n")


def request_body(stream: Connection, headers: Message, max_bytes: int) -> SizedBody | ChunkedBody:
    """The body of the request whose ``headers`` were read from ``stream``; raises
    :class:`BodyTooLarge` for a declared length over ``max_bytes``."""
    coding = headers.get("Transfer-Encoding", "").strip().lower()
    if coding:
        if coding != "chunked":
            raise BadFraming("a transfer coding other than chunked")
        return ChunkedBody(stream, max_bytes)
    declared = headers.get("Content-Length")
    if declared is None:
        raise LengthRequired
    if not declared.strip().isdigit():
        raise BadFraming("Content-Length is not a number")
    if int(declared) > max_bytes:
        raise BodyTooLarge
    return SizedBody(stream, int(declared))
