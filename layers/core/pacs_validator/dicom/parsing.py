"""Reading DICOM Part 10 files: one entry point, :func:`read_instance`.

Reading happens in two passes over the same bytes, and neither holds pixel data in memory:

1. A structural scan of the element headers (tag, VR, length) from the preamble to the last
   byte. It seeks over values instead of reading them, descends into sequences and into
   encapsulated pixel data (recording the offset table and fragment positions), and so
   detects truncation and garbage that pydicom tolerates: pydicom returns a partial, or even
   empty, data set for some truncated files instead of raising.
2. pydicom reads the attributes (``stop_before_pixels``, large values deferred) and every
   element is decoded once, sequences included, so that undecodable values are found here
   rather than later by whoever reads ``metadata.json``.

Only when the first pass finds the file sound does the second run: a file that fails the
first is answered with a 400 and no content rules.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import tempfile
import zlib
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.rules import Findings, format_tag

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Source = str | Path | BinaryIO
"""A path, or a binary file object such as an S3 body."""

PREAMBLE_LENGTH = 128
FILE_META_GROUP = 0x0002
TRANSFER_SYNTAX_UID = 0x00020010
MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
EXTENDED_OFFSET_TABLE = 0x7FE00001

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
_MAX_NESTING = 64
_MAX_OFFSET_TABLE_BYTES = 16 * 1024 * 1024
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_HASH_CHUNK = 1024 * 1024
_ZERO_CHUNK = bytes(1024 * 1024)
JPEG_START_OF_IMAGE = b"\xff\xd8"
J2K_START_OF_CODESTREAM = b"\xff\x4f\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "


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
    offset_table: Sequence[int] = ()
    fragments: Fragments | None = None
    extended_offset_table_length: int | None = None


@dataclass
class ParsedInstance:
    """What reading one file produced. ``dataset`` is None when the file is unreadable."""

    name: str
    size: int
    transfer_syntax: UID | None = None
    dataset: Dataset | None = None
    pixel_data: PixelDataElement | None = None
    meta: dict[int, str] = field(default_factory=dict)
    """String values of the file meta elements that the rules need, by tag."""
    padding_start: int | None = None
    """File offset where trailing zero padding begins (None: no padding, or a deflated data
    set, where the offset is one inside the inflated stream)."""
    sha256: str = ""
    """Hex SHA-256 of the whole file, taken from the same stream that was read ("" over the
    size cap): a non-seekable source cannot be read a second time."""


class _Truncated(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Garbled(Exception):
    def __init__(self, what: str, tag: int | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.tag = tag


class _StructureScanner:
    """Walks element headers of a data set stream without reading values."""

    def __init__(self, stream: IO[bytes], end: int, implicit: bool, little_endian: bool) -> None:
        self.stream = stream
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
        self._nonzero_at = -1
        """Where zero bytes that run to the end of the data set begin, if they do."""

    @property
    def position(self) -> int:
        return self.stream.tell()

    def _read(self, count: int, what: str) -> bytes:
        data = self.stream.read(count)
        if len(data) < count:
            raise _Truncated(what)
        return data

    def _read_header_part(self, count: int, part: str, tag: int) -> bytes:
        """``count`` bytes of element ``tag``'s header; the message is only built on failure."""
        data = self.stream.read(count)
        if len(data) < count:
            raise _Truncated(f"the {part} of element {format_tag(tag)}")
        return data

    def _skip(self, length: int, container_end: int | None, tag: int) -> None:
        target = self.position + length
        if target > self.end:
            raise _Truncated(f"the value of element {format_tag(tag)}")
        if container_end is not None and target > container_end:
            raise _Garbled(f"element {format_tag(tag)} overruns the item that holds it", tag)
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
        raise _Garbled(f"element {format_tag(tag)} has no valid VR", tag)

    def scan(self) -> None:
        """Scan the whole data set; raises _Truncated or _Garbled on the first defect."""
        self._scan_elements(container_end=self.end, implicit=self.implicit, depth=0)

    def _scan_elements(self, container_end: int | None, implicit: bool, depth: int) -> None:
        """Elements up to ``container_end``, or up to an item delimiter when it is None."""
        if depth > _MAX_NESTING:
            raise _Garbled("sequences are nested deeper than any real data set")
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
                raise _Truncated("an element tag")
            group, element = self._tag_format.unpack(head)
            tag = (group << 16) | element
            if tag == _ITEM_DELIMITER and container_end is None:
                self._read_u32("an item delimiter")
                return
            if tag >> 16 == 0xFFFE:
                raise _Garbled(f"unexpected delimiter {format_tag(tag)} among elements", tag)
            if tag < previous_tag and self.out_of_order_tag is None:
                self.out_of_order_tag = tag
            previous_tag = tag
            vr, length = self._read_vr_and_length(tag, implicit)
            self._scan_value(tag, vr, length, container_end, implicit, depth)

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
            offset_table, fragments = self._scan_fragments(tag, container_end)
            if top_level:
                self.pixel_data = PixelDataElement(
                    tag=tag, vr=self._pixel_vr(tag, vr), length=None,
                    offset_table=offset_table, fragments=fragments,
                    extended_offset_table_length=self.extended_offset_table_length,
                )
            return
        if top_level and tag in PIXEL_DATA_TAGS:
            self._skip(length, self.end, tag)
            self.pixel_data = PixelDataElement(tag=tag, vr=self._pixel_vr(tag, vr), length=length)
            return
        if top_level and tag == EXTENDED_OFFSET_TABLE:
            self.extended_offset_table_length = length
        if length == _UNDEFINED_LENGTH:
            if vr in (None, b"SQ", b"UN"):
                # An undefined-length UN is a sequence encoded in implicit VR (PS3.5 6.2.2).
                self._scan_sequence(None, implicit or vr == b"UN", depth)
                return
            raise _Garbled(f"element {format_tag(tag)} has undefined length but no SQ VR", tag)
        if length % 2:
            self.odd_length_tags.append(tag)
        if vr == b"SQ" or (vr is None and _is_dictionary_sequence(tag)):
            end = self.position + length
            if end > self.end:
                raise _Truncated(f"the value of element {format_tag(tag)}")
            self._scan_sequence(end, implicit, depth)
            return
        self._skip(length, container_end, tag)

    def _scan_sequence(self, sequence_end: int | None, implicit: bool, depth: int) -> None:
        while True:
            if sequence_end is not None and self.position >= sequence_end:
                if self.position > sequence_end:
                    raise _Garbled("a sequence item overruns its sequence")
                return
            tag = self._read_tag()
            length = self._read_u32("the length of a sequence item")
            if tag == _SEQUENCE_DELIMITER:
                return
            if tag != _ITEM:
                raise _Garbled(f"expected a sequence item, found {format_tag(tag)}", tag)
            if length == _UNDEFINED_LENGTH:
                self._scan_elements(None, implicit, depth + 1)
                continue
            item_end = self.position + length
            if item_end > self.end:
                raise _Truncated("a sequence item")
            if sequence_end is not None and item_end > sequence_end:
                raise _Garbled("a sequence item overruns its sequence")
            self._scan_elements(item_end, implicit, depth + 1)
            if self.position != item_end:
                raise _Garbled("a sequence item's elements do not fill its length")

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
                raise _Garbled("encapsulated pixel data holds something other than items", tag)
            item_end = self.position + item_length
            if item_end > self.end:
                raise _Truncated("an encapsulated pixel data fragment")
            if container_end is not None and item_end > container_end:
                raise _Garbled("a pixel data fragment overruns the item that holds it", tag)
            if first_item_start is None:
                first_item_start = item_start
            relative = item_start - first_item_start
            while next_entry < len(offset_table) and offset_table[next_entry] < relative:
                aligned, next_entry = False, next_entry + 1
            if next_entry < len(offset_table) and offset_table[next_entry] == relative:
                next_entry += 1
            head = self.stream.read(min(item_length, 12))
            count += 1
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
            raise _Garbled("encapsulated pixel data does not start with an offset table", tag)
        if self.position + length > self.end:
            raise _Truncated("the basic offset table")
        return self._read_offset_table(length)

    def _read_offset_table(self, length: int) -> array[int]:
        if length % 4 or length > _MAX_OFFSET_TABLE_BYTES:
            raise _Garbled("the basic offset table has an impossible length", 0x7FE00010)
        table = array("L" if array("L").itemsize == 4 else "I")
        table.frombytes(self._read(length, "the basic offset table"))
        if self.order == ">" and table:
            table.byteswap()
        return table


def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _is_dictionary_sequence(tag: int) -> bool:
    return _dictionary_vr(tag) == "SQ"


@contextmanager
def _seekable(source: Source) -> Iterator[tuple[IO[bytes], str]]:
    """A seekable binary stream over ``source`` and a name for messages.

    Non-seekable streams (a raw HTTP body) are spooled to a temporary file, in memory only
    while small, so that memory stays bounded whatever the size.
    """
    if isinstance(source, (str, Path)):
        with Path(source).open("rb") as stream:
            yield stream, os.fspath(source)
        return
    name = str(getattr(source, "name", "<stream>"))
    if source.seekable():
        source.seek(0)
        yield source, name
        return
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        shutil.copyfileobj(source, spool, _HASH_CHUNK)
        spool.seek(0)
        yield spool, name


def _stream_size(stream: IO[bytes]) -> int:
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _read_file_meta(stream: IO[bytes], size: int) -> dict[int, bytes]:
    """The raw values of the group 0002 elements (always explicit VR little endian)."""
    scanner = _StructureScanner(stream, size, implicit=False, little_endian=True)
    values: dict[int, bytes] = {}
    while stream.tell() + 4 <= size:
        start = stream.tell()
        tag = scanner._read_tag()
        if tag >> 16 != FILE_META_GROUP:
            stream.seek(start)
            break
        vr, length = scanner._read_vr_and_length(tag, implicit=False)
        if length == _UNDEFINED_LENGTH or vr == b"SQ":
            raise _Garbled(f"file meta element {format_tag(tag)} has an impossible length", tag)
        values[tag] = scanner._read(length, f"the value of file meta element {format_tag(tag)}")
    return values


def _uid_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw.rstrip(b"\x00 ").decode("ascii", errors="replace")


@contextmanager
def _inflated(stream: IO[bytes], start: int) -> Iterator[IO[bytes]]:
    """The deflated data set after ``start`` inflated into a spooled temporary file."""
    stream.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        while chunk := stream.read(_HASH_CHUNK):
            spool.write(inflater.decompress(chunk))
        spool.write(inflater.flush())
        if not inflater.eof:  # the deflate stream stops before its final block
            raise _Truncated("the deflated data set")
        spool.seek(0)
        yield spool


def read_instance(source: Source, config: ValidatorConfig, findings: Findings) -> ParsedInstance:
    """Read one file, adding every format finding to ``findings``.

    The returned instance has a ``dataset`` only when the file is a sound Part 10 file; its
    pixel data is described by ``pixel_data`` and never loaded.
    """
    with _seekable(source) as (stream, name):
        size = _stream_size(stream)
        parsed = ParsedInstance(name=name, size=size)
        if config.max_bytes is not None and size > config.max_bytes:
            findings.add("size.max-bytes", f"the file has {size} bytes; cap {config.max_bytes}")
            return parsed
        with findings.last_resort():
            _read_stream(stream, size, parsed, config, findings)
        parsed.sha256 = _digest(stream)
        return parsed


def _read_stream(
    stream: IO[bytes], size: int, parsed: ParsedInstance, config: ValidatorConfig,
    findings: Findings,
) -> None:
    if not _has_preamble(stream):
        findings.add("format.preamble", "no 'DICM' prefix after a 128-byte preamble")
        return
    if not _read_meta(stream, size, parsed, findings):
        return
    if not _scan_structure(stream, size, parsed, findings):
        return
    if parsed.padding_start is not None:
        stream = cast(IO[bytes], _Window(stream, parsed.padding_start))
    parsed.dataset = _read_dataset(stream, config, findings)


def _digest(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _has_preamble(stream: IO[bytes]) -> bool:
    head = stream.read(PREAMBLE_LENGTH + 4)
    return len(head) == PREAMBLE_LENGTH + 4 and head[PREAMBLE_LENGTH:] == b"DICM"


def _read_meta(stream: IO[bytes], size: int, parsed: ParsedInstance, findings: Findings) -> bool:
    try:
        raw_meta = _read_file_meta(stream, size)
    except (_Truncated, _Garbled) as exc:
        findings.add("format.file-meta", f"the file meta information is unreadable: {exc}")
        return False
    if not raw_meta:
        findings.add("format.file-meta", "the file meta information group is empty")
        return False
    parsed.meta = {tag: text for tag, raw in raw_meta.items() if (text := _uid_text(raw))}
    missing = [
        tag for tag in (MEDIA_STORAGE_SOP_CLASS_UID, MEDIA_STORAGE_SOP_INSTANCE_UID)
        if tag not in parsed.meta
    ]
    for tag in missing:
        findings.add("format.file-meta", "a required file meta element is missing or empty", tag)
    syntax = parsed.meta.get(TRANSFER_SYNTAX_UID)
    if syntax is None:
        findings.add("format.transfer-syntax", "TransferSyntaxUID is missing", TRANSFER_SYNTAX_UID)
        return False
    if not UID(syntax).is_transfer_syntax:
        findings.add(
            "format.transfer-syntax",
            "TransferSyntaxUID is not a transfer syntax this validator can read",
            TRANSFER_SYNTAX_UID,
        )
        return False
    parsed.transfer_syntax = UID(syntax)
    return not missing


def _scan_structure(
    stream: IO[bytes], size: int, parsed: ParsedInstance, findings: Findings
) -> bool:
    syntax = parsed.transfer_syntax
    assert syntax is not None
    start = stream.tell()
    if start >= size:
        findings.add("format.empty-dataset", "nothing follows the file meta information")
        return False
    try:
        if syntax.is_deflated:
            with _inflated(stream, start) as inflated:
                scanner = _scan(inflated, _stream_size(inflated), syntax)
        else:
            scanner = _scan(stream, size, syntax)
    except _Truncated as exc:
        findings.add("format.truncated", f"the file ends inside {exc.what}")
        return False
    except _Garbled as exc:
        findings.add("format.structure", f"the data set is garbled: {exc.what}", exc.tag)
        return False
    except zlib.error:
        findings.add("format.structure", "the deflated data set cannot be inflated")
        return False
    for tag in scanner.odd_length_tags:
        findings.add("format.odd-length", "the element's value length is odd", tag)
    if scanner.out_of_order_tag is not None:
        findings.add("format.tag-order", "the element is out of ascending tag order",
                     scanner.out_of_order_tag)
    if scanner.padding_start is not None:
        findings.add("format.trailing-padding", f"{scanner.end - scanner.padding_start} zero "
                     "byte(s) follow the last element")
        if not syntax.is_deflated:
            parsed.padding_start = scanner.padding_start
    if scanner.implicit != syntax.is_implicit_VR:
        findings.add("format.vr-encoding", "the data set's VR encoding differs from the one "
                     "TransferSyntaxUID names", TRANSFER_SYNTAX_UID)
    parsed.pixel_data = scanner.pixel_data
    return True


def _scan(stream: IO[bytes], size: int, syntax: UID) -> _StructureScanner:
    start = stream.tell()
    implicit = _encoded_implicit(stream.read(6), syntax)
    stream.seek(start)
    scanner = _StructureScanner(stream, size, implicit, little_endian=syntax.is_little_endian)
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


class _Window(io.RawIOBase):
    """The first ``end`` bytes of a seekable stream, so that pydicom stops where the data
    set does and never reads trailing padding as elements."""

    def __init__(self, stream: IO[bytes], end: int) -> None:
        super().__init__()
        self._stream = stream
        self._end = end

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._stream.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            return self._stream.seek(self._end + offset)
        return self._stream.seek(offset, whence)

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._stream.read(max(0, min(len(view), self._end - self._stream.tell())))
        view[:len(data)] = data
        return len(data)


def _read_dataset(stream: IO[bytes], config: ValidatorConfig, findings: Findings) -> Dataset | None:
    stream.seek(0)
    try:
        dataset = pydicom.dcmread(stream, defer_size=config.defer_size, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbled input
        findings.add("format.dataset", f"the data set cannot be read ({type(exc).__name__})")
        return None
    failed_tag = _first_undecodable(dataset)
    if failed_tag is not None:
        findings.add("format.dataset", "the element's value cannot be decoded", failed_tag)
        return None
    if len(dataset) == 0:
        findings.add("format.empty-dataset", "the data set holds no elements")
        return None
    return dataset


def _is_deferred(raw: RawDataElement | DataElement) -> bool:
    return isinstance(raw, RawDataElement) and raw.value is None and raw.length > 0


def loaded_elements(dataset: Dataset) -> Iterator[DataElement]:
    """The data set's top-level elements, decoded, leaving deferred values on disk.

    Deferred values (larger than ``defer_size``) are binary blobs that no rule reads; touching
    them would read them back from a file that may be closed or far too large.
    """
    for raw in dataset.elements():
        if not _is_deferred(raw):
            yield dataset[raw.tag]


def walk_elements(dataset: Dataset) -> Iterator[DataElement]:
    """:func:`loaded_elements`, descending into every sequence item."""
    for element in loaded_elements(dataset):
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from walk_elements(item)


def _first_undecodable(dataset: Dataset) -> int | None:
    """Decode every element once (sequences included); the tag of the first that fails."""
    for raw in dataset.elements():
        if _is_deferred(raw):
            continue
        try:
            element = dataset[raw.tag]
        except Exception:  # noqa: BLE001 - any decoding failure of any element is the finding
            return int(raw.tag)
        if element.VR == "SQ":
            for item in element.value:
                failed = _first_undecodable(item)
                if failed is not None:
                    return failed
    return None


def sha256_of(source: Source) -> str:
    """Hex SHA-256 of the whole file, read in chunks (for duplicates and ``metadata.json``)."""
    with _seekable(source) as (stream, _):
        return _digest(stream)
