"""Edits that make real files hostile, shared by the tests and ``benchmarks/bench_bombs.py``."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence
from pydicom.tag import Tag

JPEG_2000_SIZ = b"\xff\x4f\xff\x51"
JPEG_SOF_MARKERS = (0xC0, 0xC1, 0xF7)  # baseline, extended sequential, JPEG-LS


def claim_codestream_size(dataset: Dataset, width: int, height: int) -> None:
    """Make the one frame's own codestream header (JPEG or JPEG-LS SOF, JPEG 2000 SIZ)
    declare ``width`` x ``height``, leaving Rows and Columns as they are: a decoder
    allocates what the codestream says."""
    [frame] = generate_frames(dataset.PixelData, number_of_frames=1)
    patched = bytearray(frame)
    siz = patched.find(JPEG_2000_SIZ)
    if siz >= 0:
        struct.pack_into(">LL", patched, siz + 8, width, height)
    else:
        sof = next(at for at in range(2, len(patched))
                   if patched[at] == 0xFF and patched[at + 1] in JPEG_SOF_MARKERS)
        struct.pack_into(">HH", patched, sof + 5, height, width)
    dataset.PixelData = encapsulate([bytes(patched)])


def with_raw_value(where: Callable[[Dataset], Dataset], keyword: str, vr: str | None,
                   value: bytes) -> Callable[[Dataset], None]:
    """An edit that makes ``value`` the encoded value of ``keyword`` in the data set or item
    ``where`` picks, under ``vr`` (None: the file's implicit VR), as a buggy writer or an
    overwritten VR leaves it: pydicom writes the bytes as they are, into an item too when it
    was read from a file."""

    def edit(dataset: Dataset) -> None:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        where(dataset)[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, vr is None,
                                             True)

    return edit


def with_several(items: int = 0, values: int = 0, loaded_values: int = 0
                 ) -> Callable[[Dataset], None]:
    """Several things the scan counts, each within its own limit: ``items`` private items
    holding one empty UL each, ``values`` DS values (30,000 an element) and
    ``loaded_values`` top-level OB values of 64 KiB (pydicom's defer_size: loaded)."""
    def edit(dataset: Dataset) -> None:
        dataset.add_new(0x60010010, "LO", "BOUNDS")
        for start in range(0, values, 30_000):
            count = min(30_000, values - start)
            dataset.add_new(0x60011000 + start // 30_000, "DS", "\\".join("0" * count))
        for index in range(loaded_values):
            dataset.add_new(0x60011100 + index, "OB", bytes(64 * 1024))
        if items:
            holders = [Dataset() for _ in range(items)]
            for holder in holders:
                holder.add_new(0x60011000, "UL", None)
            dataset.add_new(0x60012000, "SQ", Sequence(holders))
    return edit


def with_other_bytes(data: bytes) -> bytes:
    """The same instance, every UID kept, with its SeriesDescription changed: a re-send of
    an instance under its SOPInstanceUID with other bytes."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.SeriesDescription = "sent again, changed"
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()
