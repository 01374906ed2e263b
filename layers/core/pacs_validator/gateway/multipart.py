"""A multipart body (RFC 2046 5.1, as STOW-RS sends it: RFC 2387 ``multipart/related``) read
part by part, each part's content written to a file of its own as it arrives.

The body is read in blocks of :data:`READ_BYTES`; what is held in memory is one block, the
few bytes of a delimiter that a block may end inside, and a part's headers (at most
:data:`MAX_HEADER_BYTES`). A request of any size therefore costs the gateway one part's
worth of disk at a time, never its size in memory. The preamble and the epilogue are read
and dropped; a body that ends before its closing delimiter is an error, after the parts
that were complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import BinaryIO, Protocol

READ_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
"""A part's header block longer than this is refused: a body is not let to grow memory."""
CRLF = b"\r\n"
TRANSPORT_PADDING = b" \t"


class MultipartError(ValueError):
    """The body is not a well-formed multipart body for its boundary."""


class Readable(Protocol):
    def read(self, size: int, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the body."""
        ...


@dataclass(frozen=True)
class Part:
    """One part: its headers, and the file its content was written to (the reader's to
    remove)."""

    headers: Message
    path: Path

    @property
    def content_type(self) -> str:
        """The part's media type, lower case, without parameters (RFC 2046's default,
        ``text/plain``, when it has no Content-Type)."""
        return self.headers.get_content_type()


class _Scanner:
    """The body's bytes not yet consumed, refilled block by block."""

    def __init__(self, body: Readable) -> None:
        self.body = body
        # A delimiter is CRLF "--" boundary; the first may open the body without a CRLF.
        self.buffer = bytearray(CRLF)

    def fill(self) -> bool:
        """Read one more block; False at the end of the body."""
        block = self.body.read(READ_BYTES)
        self.buffer += block
        return bool(block)

    def need(self, size: int) -> bool:
        """At least ``size`` bytes held, reading if need be; False if the body ends first."""
        while len(self.buffer) < size:
            if not self.fill():
                return False
        return True

    def through(self, marker: bytes, limit: int | None = None) -> bytes:
        """Consume everything up to and including ``marker``; what came before it is
        returned when ``limit`` bounds it, dropped otherwise (a preamble)."""
        kept = bytearray()
        while (found := self.buffer.find(marker)) < 0:
            tail = len(marker) - 1
            if limit is not None:
                kept += self.buffer[:-tail]
                if len(kept) > limit:
                    raise MultipartError("a part's headers are longer than allowed")
            del self.buffer[:-tail]
            if not self.fill():
                raise MultipartError("the body ends before a boundary")
        if limit is not None:
            kept += self.buffer[:found]
            if len(kept) > limit:
                raise MultipartError("a part's headers are longer than allowed")
        del self.buffer[:found + len(marker)]
        return bytes(kept)

    def copy_until(self, marker: bytes, stream: BinaryIO) -> None:
        """Write everything before ``marker`` to ``stream``, consuming the marker too."""
        while (found := self.buffer.find(marker)) < 0:
            tail = len(marker) - 1
            stream.write(self.buffer[:-tail])
            del self.buffer[:-tail]
            if not self.fill():
                raise MultipartError("the body ends inside a part: no closing boundary")
        stream.write(self.buffer[:found])
        del self.buffer[:found + len(marker)]

    def drain(self) -> None:
        """Read the rest of the body (an epilogue) and drop it."""
        self.buffer.clear()
        while self.fill():
            self.buffer.clear()


def read_parts(body: Readable, boundary: str, folder: Path) -> Iterator[Part]:
    """Each part of ``body`` in turn, its content in a new file in ``folder``.

    A part is yielded once its closing delimiter has been read, so its file is complete;
    raises :class:`MultipartError` when the body is malformed, after the complete parts."""
    if not boundary or len(boundary) > 70:  # RFC 2046: 1 to 70 characters
        raise MultipartError("the boundary is empty or longer than 70 characters")
    delimiter = CRLF + b"--" + boundary.encode("latin-1")
    scanner = _Scanner(body)
    scanner.through(delimiter)  # the preamble
    while True:
        if not scanner.need(2):
            raise MultipartError("the body ends after a boundary: no closing boundary")
        if scanner.buffer.startswith(b"--"):
            scanner.drain()  # the epilogue
            return
        padding = scanner.through(CRLF, limit=MAX_HEADER_BYTES)
        if padding.strip(TRANSPORT_PADDING):
            raise MultipartError("a boundary line carries more than the boundary")
        yield _part(scanner, delimiter, folder)


def _part(scanner: _Scanner, delimiter: bytes, folder: Path) -> Part:
    """The part that starts here: its headers read, its content copied to a file."""
    if not scanner.need(2):
        raise MultipartError("the body ends inside a part's headers")
    if scanner.buffer.startswith(CRLF):  # no headers at all
        del scanner.buffer[:2]
        header_block = b""
    else:
        header_block = scanner.through(CRLF + CRLF, limit=MAX_HEADER_BYTES) + CRLF
    headers = BytesHeaderParser().parsebytes(header_block + CRLF)
    descriptor, name = tempfile.mkstemp(prefix="stow-", suffix=".part", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            scanner.copy_until(delimiter, stream)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Part(headers, path)
