"""The STOW-RS door's multipart reader: parts come out whole whatever the reads cut, the
preamble and epilogue are dropped, and a malformed body is an error after the whole parts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pacs_validator.gateway import multipart
from pacs_validator.gateway.multipart import MultipartError, Part, read_parts

BOUNDARY = "0f3cf5c0-70e0-41ef"
FIRST = b"\x00DICM first part\r\n--0f3cf5c0 not a boundary\r\n--0f3cf5c0-70e0-41eX"
SECOND = b"second part\r\n"
BODY = (b"a preamble to drop\r\n"
        b"--0f3cf5c0-70e0-41ef\r\nContent-Type: application/dicom\r\n\r\n" + FIRST +
        b"\r\n--0f3cf5c0-70e0-41ef \t\r\nContent-Type: Application/DICOM; "
        b"transfer-syntax=1.2.840.10008.1.2.1\r\nContent-ID: <2>\r\n\r\n" + SECOND +
        b"\r\n--0f3cf5c0-70e0-41ef--\r\nan epilogue to drop")


class Trickle:
    """A body read ``step`` bytes at a time, as a slow connection hands it over."""

    def __init__(self, data: bytes, step: int) -> None:
        self.stream = io.BytesIO(data)
        self.step = step

    def read(self, size: int, /) -> bytes:
        return self.stream.read(min(size, self.step))


def contents(body: bytes, folder: Path, step: int = 1 << 20) -> list[tuple[str, bytes]]:
    """(media type, content) of each part, each file removed as it is read."""
    found = []
    part: Part
    for part in read_parts(Trickle(body, step), BOUNDARY, folder):
        found.append((part.content_type, part.path.read_bytes()))
        part.path.unlink()
    return found


@pytest.mark.parametrize("step", [1, 2, 3, 7, 19, 20, 21, 64, 1 << 20])
def test_parts_come_out_whole_wherever_the_reads_cut_a_boundary(
        tmp_path: Path, step: int) -> None:
    assert contents(BODY, tmp_path, step) == [("application/dicom", FIRST),
                                              ("application/dicom", SECOND)]
    assert list(tmp_path.iterdir()) == []


def test_reads_bigger_than_a_block_cut_anywhere(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A part longer than the read block is copied block by block, never held whole."""
    monkeypatch.setattr(multipart, "READ_BYTES", 10)
    large = bytes(range(256)) * 40

    [(_, content)] = contents(f"--{BOUNDARY}\r\n\r\n".encode() + large +
                              f"\r\n--{BOUNDARY}--".encode(), tmp_path)

    assert content == large


def test_the_epilogue_is_read_to_the_end(tmp_path: Path) -> None:
    """What follows the body on a kept-alive connection is the next request: none of the
    body may be left unread."""
    body = Trickle(BODY, 7)

    for part in read_parts(body, BOUNDARY, tmp_path):
        part.path.unlink()

    assert body.stream.read() == b""


def test_a_first_boundary_at_the_very_start_and_no_epilogue(tmp_path: Path) -> None:
    body = f"--{BOUNDARY}\r\n\r\nonly\r\n--{BOUNDARY}--".encode()

    assert contents(body, tmp_path) == [("text/plain", b"only")]  # no headers: RFC 2046


def test_a_missing_closing_boundary_is_an_error_after_the_whole_parts(tmp_path: Path) -> None:
    body = f"--{BOUNDARY}\r\n\r\nwhole\r\n--{BOUNDARY}\r\n\r\ncut off".encode()
    parts = read_parts(Trickle(body, 5), BOUNDARY, tmp_path)

    whole = next(parts)
    assert whole.path.read_bytes() == b"whole"
    whole.path.unlink()
    with pytest.raises(MultipartError, match="no closing boundary"):
        next(parts)
    assert list(tmp_path.iterdir()) == []  # the cut part's file is removed


@pytest.mark.parametrize("body", [
    b"", b"no boundary in here", f"--{BOUNDARY}".encode(),
    f"--{BOUNDARY}\r\n\r\npart\r\n--{BOUNDARY}".encode(),
    f"--{BOUNDARY}junk\r\n\r\npart\r\n--{BOUNDARY}--".encode(),
    f"--{BOUNDARY}\r\nContent-Type: application/dicom".encode()])
def test_a_malformed_body_is_an_error(tmp_path: Path, body: bytes) -> None:
    with pytest.raises(MultipartError):
        contents(body, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_headers_longer_than_allowed_are_refused(tmp_path: Path) -> None:
    endless = f"--{BOUNDARY}\r\nX-Padding: ".encode() + b"x" * (multipart.MAX_HEADER_BYTES + 1)

    with pytest.raises(MultipartError, match="headers"):
        contents(endless + b"\r\n\r\npart\r\n--" + BOUNDARY.encode() + b"--", tmp_path, 100)


def test_a_boundary_over_70_characters_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MultipartError):
        next(read_parts(io.BytesIO(b""), "b" * 71, tmp_path))
