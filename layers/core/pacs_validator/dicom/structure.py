"""The first of the two reading passes: a structural scan of the element headers.

From the preamble to the last byte, the scanner reads each element's tag, VR and length and
seeks over its value instead of reading it. It descends into sequences and into encapsulated
pixel data (recording the offset table and counting fragments), and so detects truncation and
garbage that pydicom tolerates. :mod:`pacs_validator.dicom.parsing` runs it before pydicom
reads a single attribute.

It also counts what pydicom would later pay for (elements, sequence items, nesting) and what
counting itself costs (pixel data fragments), and stops at the first count over its
:class:`~pacs_validator.dicom.limits.Limits`, or at the end when the counts together are
estimated to cost more than their budget: a few kilobytes of hostile input can declare more
than any memory holds, and the scan's count is the only cheap place to refuse them.
"""

from __future__ import annotations

import io
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

from pacs_validator.dicom.limits import Limits, estimated_bytes
from pacs_validator.dicom.rules import format_tag

FILE_META_GROUP = 0x0002
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
EXTENDED_OFFSET_TABLE = 0x7FE00001
FRAME_SIZE_TAGS = {
    0x00280002: "SamplesPerPixel", 0x00280008: "NumberOfFrames", 0x00280010: "Rows",
    0x00280011: "Columns", 0x00280100: "BitsAllocated",
}
"""The only values the scan reads, at the top level: how large a frame is and how many
there are, known before pydicom parses anything (a preview checks them before decoding)."""
_NUMBER_OF_FRAMES = 0x00280008
_LONGEST_FRAME_SIZE_VALUE = 12  # an IS value
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_LENGTH_VRS = frozenset(  # PS3.5 table 7.1-1: a reserved field and a 32-bit length
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_LENGTH_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
     b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
NUMBER_WIDTHS = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8, "SV": 8,
                 "UV": 8}
"""Bytes per value of the binary VRs pydicom reads as one Python number (or tag) per value:
a value length that is not a multiple of its VR's width holds no whole number of values."""
_NUMBER_SIZES = {vr.encode(): width for vr, width in NUMBER_WIDTHS.items()}
_SPLIT_TEXT_VRS = frozenset(
    {b"AE", b"AS", b"CS", b"DA", b"DS", b"DT", b"IS", b"LO", b"PN", b"SH", b"TM", b"UC", b"UI"}
)
"""Text VRs pydicom splits at each backslash, one Python object per value."""
_COUNT_CHUNK = 1024 * 1024
_MAX_OFFSET_TABLE_BYTES = 16 * 1024 * 1024
_ZERO_CHUNK = bytes(1024 * 1024)
JPEG_START_OF_IMAGE = b"\xff\xd8"
J2K_START_OF_CODESTREAM = b"\xff\x4f\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
_FRAME_START_MARKERS = (JPEG_START_OF_IMAGE, J2K_START_OF_CODESTREAM, JP2_SIGNATURE)


@dataclass(frozen=True)
class Fragments:
    """What the checks need of encapsulated pixel data, counted while scanning.

    Counts, not a list: a hostile file can hold millions of tiny items, and keeping one
    object per item would let it exhaust a Lambda's memory.
    """

    count: int
    jpeg_starts: int
    """Fragments that begin with a JPEG SOI marker (every JPEG / JPEG-LS frame does)."""
    j2k_starts: int
    """Fragments that begin with a JPEG 2000 codestream or JP2 signature."""
    offsets_at_item_starts: bool
    """Every basic offset table entry names the start of an item, in ascending order."""


@dataclass(frozen=True)
class PixelDataElement:
    """The top-level pixel data element as found by the structural scan (value never read)."""

    tag: int
    vr: str
    length: int | None
    """Value length of native pixel data; None for encapsulated (undefined length)."""
    value_offset: int
    """Where the value starts in the scanned stream (the file, unless deflated)."""
    offset_table: Sequence[int] = ()
    fragments: Fragments | None = None
    extended_offset_table_length: int | None = None


class Truncated(Exception):
    """The file ends inside ``what`` (an element, a value, the deflated data set)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Garbled(Exception):
    """What the scan found is not a DICOM data set; ``tag`` names the element, if known."""

    def __init__(self, what: str, tag: int | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.tag = tag


LIMIT_RULES = frozenset({"format.inflated-size", "format.element-count", "format.item-count",
                         "format.nesting-depth", "format.fragment-count", "format.loaded-size",
                         "format.value-count", "format.estimated-size"})
"""The rules of a :class:`LimitExceeded` raised while a file's structure is read."""


class LimitExceeded(Exception):
    """The input exceeds one of the configured :class:`Limits`; ``rule`` is the rule id."""

    def __init__(self, rule: str, what: str) -> None:
        super().__init__(what)
        self.rule = rule
        self.what = what


class StructureScanner:
    """Walks element headers of a data set stream without reading values."""

    def __init__(
        self, stream: IO[bytes], end: int, implicit: bool, little_endian: bool, limits: Limits,
        defer_size: int,
    ) -> None:
        self.stream = stream
        self.limits = limits
        self.defer_size = defer_size
        """Top-level values up to this size are loaded by the pydicom read that follows (its
        ``defer_size``; 0 when it reads no top-level value but group 0028). Values in
        sequence items are always loaded: pydicom defers none of them."""
        self.element_count = 0
        self.item_count = 0
        self.loaded_bytes = 0
        self.value_count = 0
        self.end = end
        self.implicit = implicit
        self.order = "<" if little_endian else ">"
        self._tag_format = struct.Struct(self.order + "HH")
        self._u16_format = struct.Struct(self.order + "H")
        self._u32_format = struct.Struct(self.order + "L")
        self._item_format = struct.Struct(self.order + "HHL")
        self.pixel_data: PixelDataElement | None = None
        self.extended_offset_table_length: int | None = None
        self.odd_length_tags: list[int] = []
        self.out_of_order_tag: int | None = None
        self.padding_start: int | None = None
        self.frame_size_values: dict[str, int] = {}
        """Positive values of the :data:`FRAME_SIZE_TAGS` found, by keyword."""
        self._nonzero_at = -1
        """Where zero bytes that run to the end of the data set begin, if they do."""

    @property
    def position(self) -> int:
        return self.stream.tell()

    def _read(self, count: int, what: str) -> bytes:
        data = self.stream.read(count)
        if len(data) < count:
            raise Truncated(what)
        return data

    def _read_header_part(self, count: int, part: str, tag: int) -> bytes:
        """``count`` bytes of element ``tag``'s header; the message is only built on failure."""
        data = self.stream.read(count)
        if len(data) < count:
            raise Truncated(f"the {part} of element {format_tag(tag)}")
        return data

    def _skip(self, length: int, container_end: int | None, tag: int) -> None:
        target = self.position + length
        if target > self.end:
            raise Truncated(f"the value of element {format_tag(tag)}")
        if container_end is not None and target > container_end:
            raise Garbled(f"element {format_tag(tag)} overruns the item that holds it", tag)
        self.stream.seek(target)

    def _read_tag(self) -> int:
        group, element = self._tag_format.unpack(self._read(4, "an element tag"))
        tag: int = (group << 16) | element
        return tag

    def _read_u32(self, what: str) -> int:
        value: int = self._u32_format.unpack(self._read(4, what))[0]
        return value

    def _read_vr_and_length(self, tag: int, implicit: bool) -> tuple[bytes | None, int]:
        # Messages are formatted only when a read falls short: this runs for every element.
        if implicit:
            return None, self._u32_format.unpack(self._read_header_part(4, "length", tag))[0]
        vr = self._read_header_part(2, "VR", tag)
        if vr in _LONG_LENGTH_VRS:
            self._read_header_part(2, "header", tag)
            return vr, self._u32_format.unpack(self._read_header_part(4, "length", tag))[0]
        if vr in _SHORT_LENGTH_VRS:
            length: int = self._u16_format.unpack(self._read_header_part(2, "length", tag))[0]
            return vr, length
        raise Garbled(f"element {format_tag(tag)} has no valid VR", tag)

    @property
    def estimated_bytes(self) -> int:
        """What reading and describing the data set scanned so far is estimated to cost."""
        return estimated_bytes(self.element_count, self.item_count, self.value_count,
                               self.loaded_bytes)

    def scan(self) -> None:
        """Scan the whole data set; raises Truncated or Garbled on the first defect, and
        LimitExceeded on the first count over its limit, or when the counts together are
        estimated to cost more than ``max_estimated_bytes`` (each may be within its own
        limit: their costs add up)."""
        self._scan_elements(container_end=self.end, implicit=self.implicit, depth=0)
        if self.estimated_bytes > self.limits.max_estimated_bytes:
            raise LimitExceeded("format.estimated-size", "the data set's elements, items, "
                                "values and loaded bytes together are estimated to cost more "
                                f"than {self.limits.max_estimated_bytes} bytes")

    def _scan_elements(self, container_end: int | None, implicit: bool, depth: int) -> None:
        """Elements up to ``container_end``, or up to an item delimiter when it is None."""
        if depth > self.limits.max_nesting_depth:
            raise LimitExceeded("format.nesting-depth", "sequences are nested deeper than "
                                f"{self.limits.max_nesting_depth} levels")
        previous_tag = -1
        while True:
            if container_end is not None and self.position >= container_end:
                return
            start = self.position
            head = self.stream.read(4)
            if depth == 0 and head.count(0) == len(head) and self._zeros_to_end(start):
                self.padding_start = start
                return
            if len(head) < 4:
                raise Truncated("an element tag")
            group, element = self._tag_format.unpack(head)
            tag = (group << 16) | element
            if tag == _ITEM_DELIMITER and container_end is None:
                self._read_u32("an item delimiter")
                return
            if tag >> 16 == 0xFFFE:
                raise Garbled(f"unexpected delimiter {format_tag(tag)} among elements", tag)
            self._count_element()
            if tag < previous_tag and self.out_of_order_tag is None:
                self.out_of_order_tag = tag
            previous_tag = tag
            vr, length = self._read_vr_and_length(tag, implicit)
            self._scan_value(tag, vr, length, container_end, implicit, depth)

    def _count_element(self) -> None:
        self.element_count += 1
        if self.element_count > self.limits.max_elements:
            raise LimitExceeded("format.element-count", "the data set holds more than "
                                f"{self.limits.max_elements} data elements")

    def _count_item(self) -> None:
        self.item_count += 1
        if self.item_count > self.limits.max_items:
            raise LimitExceeded("format.item-count", "the data set holds more than "
                                f"{self.limits.max_items} sequence items")

    def _count_loaded(self, length: int) -> None:
        self.loaded_bytes += length
        if self.loaded_bytes > self.limits.max_loaded_bytes:
            raise LimitExceeded("format.loaded-size", "the values pydicom would hold in "
                                f"memory are larger than {self.limits.max_loaded_bytes} bytes")

    def _count_values(self, tag: int, vr: bytes | None, length: int) -> None:
        """Count the values pydicom will make of a loaded element, a Python object each: a
        64 KiB DS of "0\\0\\..." is 32 767 of them, about 6 MB once read. Text is read
        (a megabyte at a time, its bytes already counted) for its backslashes, and the
        stream is left where it was."""
        vr = vr or (_dictionary_vr(tag) or "").encode()
        if vr in _NUMBER_SIZES:
            self.value_count += length // _NUMBER_SIZES[vr]
        elif vr in _SPLIT_TEXT_VRS:
            start, remaining = self.position, length
            self.value_count += 1
            while remaining > 0 and (chunk := self.stream.read(min(remaining, _COUNT_CHUNK))):
                self.value_count += chunk.count(b"\\")
                remaining -= len(chunk)
            self.stream.seek(start)
        else:
            self.value_count += 1
        if self.value_count > self.limits.max_values:
            raise LimitExceeded("format.value-count", "the data set's elements hold more "
                                f"than {self.limits.max_values} values")

    def _zeros_to_end(self, start: int) -> bool:
        """Whether every byte from ``start`` to the end is zero (trailing padding).

        Some writers pad files with zeros, up to megabytes of them; common readers ignore
        them. Compared a chunk at a time against a zero block, so time is that of a read
        and memory stays one chunk whatever the padding's size. The first non-zero byte
        found is remembered: a garbled file can present thousands of all-zero "tags" before
        it, and each must not re-read the same zeros.
        """
        if start <= self._nonzero_at:
            self.stream.seek(start + 4)
            return False
        self.stream.seek(start)
        zeros = memoryview(_ZERO_CHUNK)
        while chunk := self.stream.read(min(len(_ZERO_CHUNK), self.end - self.position)):
            if chunk != zeros[:len(chunk)]:
                first = len(chunk) - len(chunk.lstrip(b"\x00"))
                self._nonzero_at = self.position - len(chunk) + first
                self.stream.seek(start + 4)
                return False
        return True

    def _scan_value(
        self,
        tag: int,
        vr: bytes | None,
        length: int,
        container_end: int | None,
        implicit: bool,
        depth: int,
    ) -> None:
        top_level = depth == 0
        if tag in PIXEL_DATA_TAGS and length == _UNDEFINED_LENGTH:
            # Encapsulated pixel data is legal in a sequence item too (an Icon Image
            # Sequence item of a compressed file): its structure is checked alike, but only
            # the top-level element is the image the frame rules judge.
            value_offset = self.position
            offset_table, fragments = self._scan_fragments(tag, container_end)
            if not top_level:  # pydicom loads an icon's pixels, as every value in an item
                self._count_loaded(self.position - value_offset)
            if top_level:
                self.pixel_data = PixelDataElement(
                    tag=tag, vr=self._pixel_vr(tag, vr), length=None, value_offset=value_offset,
                    offset_table=offset_table, fragments=fragments,
                    extended_offset_table_length=self.extended_offset_table_length,
                )
            return
        if top_level and tag in PIXEL_DATA_TAGS:
            value_offset = self.position
            self._skip(length, self.end, tag)
            self.pixel_data = PixelDataElement(tag=tag, vr=self._pixel_vr(tag, vr), length=length,
                                               value_offset=value_offset)
            return
        if top_level and tag == EXTENDED_OFFSET_TABLE:
            self.extended_offset_table_length = length
        if length == _UNDEFINED_LENGTH:
            if vr in (None, b"SQ", b"UN"):
                # An undefined-length UN is a sequence encoded in implicit VR (PS3.5 6.2.2).
                self._scan_sequence(None, implicit or vr == b"UN", depth)
                return
            raise Garbled(f"element {format_tag(tag)} has undefined length but no SQ VR", tag)
        if length % 2:
            self.odd_length_tags.append(tag)
        if vr == b"SQ" or (vr is None and _is_dictionary_sequence(tag)):
            end = self.position + length
            if end > self.end:
                raise Truncated(f"the value of element {format_tag(tag)}")
            self._scan_sequence(end, implicit, depth)
            return
        if top_level and tag in FRAME_SIZE_TAGS and length <= _LONGEST_FRAME_SIZE_VALUE:
            self._read_frame_size_value(tag, length)
            return
        if not top_level or length <= self.defer_size:
            self._count_loaded(length)
            self._count_values(tag, vr, length)
        self._skip(length, container_end, tag)

    def _read_frame_size_value(self, tag: int, length: int) -> None:
        """Keep a :data:`FRAME_SIZE_TAGS` value that is a positive number (a US, or the IS
        of NumberOfFrames); pydicom judges the others later."""
        raw = self._read(length, f"the value of element {format_tag(tag)}")
        if tag == _NUMBER_OF_FRAMES:
            text = raw.strip(b"\0 ")
            number = int(text) if text.isdigit() else 0
        else:
            number = self._u16_format.unpack(raw)[0] if length == 2 else 0
        if number > 0:
            self.frame_size_values[FRAME_SIZE_TAGS[tag]] = number

    def _scan_sequence(self, sequence_end: int | None, implicit: bool, depth: int) -> None:
        while True:
            if sequence_end is not None and self.position >= sequence_end:
                if self.position > sequence_end:
                    raise Garbled("a sequence item overruns its sequence")
                return
            tag = self._read_tag()
            length = self._read_u32("the length of a sequence item")
            if tag == _SEQUENCE_DELIMITER:
                return
            if tag != _ITEM:
                raise Garbled(f"expected a sequence item, found {format_tag(tag)}", tag)
            self._count_item()
            if length == _UNDEFINED_LENGTH:
                self._scan_elements(None, implicit, depth + 1)
                continue
            item_end = self.position + length
            if item_end > self.end:
                raise Truncated("a sequence item")
            if sequence_end is not None and item_end > sequence_end:
                raise Garbled("a sequence item overruns its sequence")
            self._scan_elements(item_end, implicit, depth + 1)
            if self.position != item_end:
                raise Garbled("a sequence item's elements do not fill its length")

    @staticmethod
    def _pixel_vr(tag: int, vr: bytes | None) -> str:
        return vr.decode("ascii") if vr else (_dictionary_vr(tag) or "OW")

    def _scan_fragments(self, tag: int, container_end: int | None) -> tuple[array[int], Fragments]:
        """Encapsulated pixel data: the basic offset table, then fragments up to the sequence
        delimiter, counted (never kept) with the codestream markers they start with."""
        offset_table = self._read_item_header_and_offset_table(tag)
        count = jpeg_starts = j2k_starts = 0
        first_item_start: int | None = None
        next_entry, aligned = 0, True
        while True:
            item_start = self.position
            item_tag, item_length = self._read_item_header()
            if item_tag == _SEQUENCE_DELIMITER:
                break
            if item_tag != _ITEM or item_length == _UNDEFINED_LENGTH:
                raise Garbled("encapsulated pixel data holds something other than items", tag)
            item_end = self.position + item_length
            if item_end > self.end:
                raise Truncated("an encapsulated pixel data fragment")
            if container_end is not None and item_end > container_end:
                raise Garbled("a pixel data fragment overruns the item that holds it", tag)
            if first_item_start is None:
                first_item_start = item_start
            relative = item_start - first_item_start
            while next_entry < len(offset_table) and offset_table[next_entry] < relative:
                aligned, next_entry = False, next_entry + 1
            if next_entry < len(offset_table) and offset_table[next_entry] == relative:
                next_entry += 1
            head = self.stream.read(min(item_length, 12))
            count += 1
            if count > self.limits.max_fragments:
                raise LimitExceeded("format.fragment-count", "encapsulated pixel data holds "
                                    f"more than {self.limits.max_fragments} items")
            jpeg_starts += head.startswith(JPEG_START_OF_IMAGE)
            j2k_starts += head.startswith((J2K_START_OF_CODESTREAM, JP2_SIGNATURE))
            self.stream.seek(item_end)
        aligned_table = aligned and next_entry == len(offset_table)
        return offset_table, Fragments(count, jpeg_starts, j2k_starts, aligned_table)

    def _read_item_header(self) -> tuple[int, int]:
        group, element, length = self._item_format.unpack(
            self._read(8, "a pixel data item header")
        )
        return (group << 16) | element, length

    def _read_item_header_and_offset_table(self, tag: int) -> array[int]:
        """The basic offset table, the first item of encapsulated pixel data (maybe empty)."""
        item_tag, length = self._read_item_header()
        if item_tag != _ITEM or length == _UNDEFINED_LENGTH:
            raise Garbled("encapsulated pixel data does not start with an offset table", tag)
        if self.position + length > self.end:
            raise Truncated("the basic offset table")
        return self._read_offset_table(length)

    def _read_offset_table(self, length: int) -> array[int]:
        if length % 4 or length > _MAX_OFFSET_TABLE_BYTES:
            raise Garbled("the basic offset table has an impossible length", 0x7FE00010)
        table = array("L" if array("L").itemsize == 4 else "I")
        table.frombytes(self._read(length, "the basic offset table"))
        if self.order == ">" and table:
            table.byteswap()
        return table


def frame_head(stream: IO[bytes], pixel: PixelDataElement, index: int, max_bytes: int
               ) -> bytes | None:
    """The first ``max_bytes`` of the fragment that begins frame ``index`` of encapsulated
    pixel data, found as the scan counts frames (the index-th fragment that starts with a
    JPEG or JPEG 2000 marker); None when there is no such fragment.

    For the codestream's own header, read before a decoder allocates what it declares.
    The pixel data must have been scanned: its items are known to be sound.
    """
    item = struct.Struct("<HHL")
    stream.seek(pixel.value_offset)
    stream.seek(item.unpack(stream.read(8))[2], io.SEEK_CUR)  # the basic offset table
    starts = 0
    while True:
        group, element, length = item.unpack(stream.read(8))
        if (group << 16) | element == _SEQUENCE_DELIMITER:
            return None
        start = stream.tell()
        if stream.read(min(length, 12)).startswith(_FRAME_START_MARKERS):
            if starts == index:
                stream.seek(start)
                return stream.read(min(length, max_bytes))
            starts += 1
        stream.seek(start + length)


def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _is_dictionary_sequence(tag: int) -> bool:
    return _dictionary_vr(tag) == "SQ"


def read_file_meta(stream: IO[bytes], size: int, limits: Limits) -> dict[int, bytes]:
    """The raw values of the group 0002 elements (always explicit VR little endian)."""
    scanner = StructureScanner(stream, size, implicit=False, little_endian=True, limits=limits,
                               defer_size=0)
    values: dict[int, bytes] = {}
    while stream.tell() + 4 <= size:
        start = stream.tell()
        tag = scanner._read_tag()
        if tag >> 16 != FILE_META_GROUP:
            stream.seek(start)
            break
        scanner._count_element()
        vr, length = scanner._read_vr_and_length(tag, implicit=False)
        if length == _UNDEFINED_LENGTH or vr == b"SQ":
            raise Garbled(f"file meta element {format_tag(tag)} has an impossible length", tag)
        scanner._count_loaded(length)
        values[tag] = scanner._read(length, f"the value of file meta element {format_tag(tag)}")
    return values


def scan_data_set(
    stream: IO[bytes], size: int, syntax: UID, limits: Limits, defer_size: int
) -> StructureScanner:
    start = stream.tell()
    implicit = _encoded_implicit(stream.read(6), syntax)
    stream.seek(start)
    scanner = StructureScanner(stream, size, implicit, syntax.is_little_endian, limits,
                               defer_size)
    scanner.scan()
    return scanner


def _encoded_implicit(first_header: bytes, syntax: UID) -> bool:
    """Whether the data set is really encoded in implicit VR.

    Some writers encode implicit VR under an explicit transfer syntax or the reverse;
    pydicom reads such files by looking at the first element's header, and so do we
    (the rule ``format.vr-encoding`` reports the disagreement).
    """
    if not syntax.is_little_endian:
        return False
    looks_explicit = first_header[4:6] in _LONG_LENGTH_VRS | _SHORT_LENGTH_VRS
    return not looks_explicit
