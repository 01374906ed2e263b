"""Reading DICOM Part 10 files: one entry point, :func:`read_instance`.

Reading happens in two passes over the same bytes, and neither holds pixel data in memory:

1. A structural scan of the element headers (tag, VR, length) from the preamble to the last
   byte (:mod:`pacs_validator.dicom.structure`). It seeks over values instead of reading
   them, descends into sequences and into encapsulated pixel data (recording the offset
   table and fragment positions), and so detects truncation and garbage that pydicom
   tolerates: pydicom returns a partial, or even empty, data set for some truncated files
   instead of raising.
2. pydicom reads the attributes (``stop_before_pixels``, large values deferred) and every
   element is decoded once, sequences and the file meta included, so that undecodable
   values are found here rather than later by whoever reads ``metadata.json``. A value that
   is no whole number of its VR's values is read as empty (see :class:`WrongWidth`).

Only when the first pass finds the file sound does the second run: a file that fails the
first is answered with a 400 and no content rules. The first pass also enforces the
configured :class:`~pacs_validator.dicom.limits.Limits` (a 413), so that pydicom never parses
more elements, items, value bytes or values than they allow.

A deflated data set is inflated once, capped, into a spooled temporary file; both passes
read that file, and pydicom is handed the inflated data set rather than the file: its own
reader would inflate the whole stream in memory, uncapped.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import weakref
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.hooks import hooks
from pydicom.uid import UID

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.limits import Limits
from pacs_validator.dicom.rules import Findings, element_name
from pacs_validator.dicom.structure import (
    NUMBER_WIDTHS,
    PIXEL_DATA_TAGS,
    Garbled,
    LimitExceeded,
    PixelDataElement,
    Truncated,
    frame_head,
    read_file_meta,
    scan_data_set,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Source = str | os.PathLike[str] | BinaryIO
"""A path, or a binary file object such as an S3 body."""

PREAMBLE_LENGTH = 128
TRANSFER_SYNTAX_UID = 0x00020010
MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003

_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_HASH_CHUNK = 1024 * 1024
_INFLATE_PIECE = 1024 * 1024
"""Most bytes one inflate call may produce: a megabyte of deflated zeros inflates to a
gigabyte, so output is bounded per call, not per input chunk."""
_LONG_UN = 0xFFFF
"""pydicom reads a standard element encoded as UN of this many bytes or more as UN, and a
shorter one by its dictionary VR (``config.replace_un_with_known_vr``)."""






@dataclass(frozen=True)
class WrongWidth:
    """An element whose value length is no multiple of its VR's width (a US of 3 bytes, an
    FD of 12): not a whole number of values. pydicom raises when such a value is read, and
    other readers drop the bytes left over, so the read takes it as empty: every reader of
    the data set after it (rules, the conformance locator, the description, the DICOM JSON)
    meets an empty element, and the rules report it from this record."""

    tag: int
    vr: str
    length: int
    width: int
    path: str | None = None
    """Where it is through sequence items (``SegmentSequence[1]/SegmentNumber``); None at
    the top level of the data set or of the file meta."""


@dataclass
class ParsedInstance:
    """What reading one file produced. ``dataset`` is None when the file is unreadable."""

    name: str
    size: int
    transfer_syntax: UID | None = None
    dataset: Dataset | None = None
    pixel_data: PixelDataElement | None = None
    frame_size_values: dict[str, int] = field(default_factory=dict)
    """Rows, Columns, SamplesPerPixel, BitsAllocated and NumberOfFrames as the structural
    scan read them, when present and positive."""
    meta: dict[int, str] = field(default_factory=dict)
    """String values of the file meta elements that the rules need, by tag."""
    padding_start: int | None = None
    """File offset where trailing zero padding begins (None: no padding, or a deflated data
    set, where the offset is one inside the inflated stream)."""
    sha256: str = ""
    """Hex SHA-256 of the whole file, taken from the same stream that was read ("" over the
    size cap): a non-seekable source cannot be read a second time."""
    wrong_widths: list[WrongWidth] = field(default_factory=list)
    """The elements the read took as empty, their values no whole number of values."""
    estimated_bytes: int = 0
    """What reading and describing the data set is estimated to cost, from the structural
    scan's counts (:func:`~pacs_validator.dicom.limits.estimated_bytes`): what storing the
    instance costs, known without reading it again."""












@contextmanager
def _seekable(source: Source) -> Iterator[tuple[IO[bytes], str]]:
    """A seekable binary stream over ``source`` and a name for messages.

    Non-seekable streams (a raw HTTP body) are spooled to a temporary file, in memory only
    while small, so that memory stays bounded whatever the size.
    """
    if isinstance(source, (str, os.PathLike)):
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




def _uid_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw.rstrip(b"\x00 ").decode("ascii", errors="replace")


@contextmanager
def _inflated(stream: IO[bytes], start: int, max_bytes: int) -> Iterator[IO[bytes]]:
    """The deflated data set after ``start`` inflated into a spooled temporary file.

    Raises LimitExceeded as soon as it would inflate to more than ``max_bytes``, having
    written at most that many: memory holds one piece, the disk at most the cap.
    """
    stream.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    written = 0
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        while not inflater.eof:
            chunk = inflater.unconsumed_tail or stream.read(_HASH_CHUNK)
            piece = inflater.decompress(chunk, _INFLATE_PIECE)
            if not chunk and not piece:
                raise Truncated("the deflated data set")  # it stops before its final block
            written += len(piece)
            if written > max_bytes:
                raise LimitExceeded("format.inflated-size", "the deflated data set inflates "
                                    f"to more than {max_bytes} bytes")
            spool.write(piece)
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


def read_head(path: str | os.PathLike[str], defer_size: int) -> Dataset:
    """The data set of the head of a file (its bytes up to its pixel data's value, or up to
    its end or trailing padding when it has none) at ``path``, as :func:`read_instance`
    reads it, without the first pass. Only for bytes that pass already found sound and
    within the limits: storing reads a valid instance's head back this way. Not for a
    deflated file, whose data set is read from the whole file, inflated. Its values that are
    no whole number of values are read as empty, as :func:`read_instance` reads them."""
    dataset = pydicom.dcmread(path, defer_size=defer_size, stop_before_pixels=True)
    _decode(dataset, [])  # it decodes: its bytes are those validation read
    return dataset


def scan_instance(source: Source, limits: Limits, findings: Findings) -> ParsedInstance:
    """The first pass alone (no pydicom, no digest), adding its findings to ``findings``.

    For a reader that must know a file is sound and within ``limits`` before handing it to
    pydicom, as a preview must: its values loaded are counted as for a read of group 0028
    alone (the values in sequence items). The instance has no ``dataset``.
    """
    with _seekable(source) as (stream, name):
        size = _stream_size(stream)
        parsed = ParsedInstance(name=name, size=size)
        with findings.last_resort(), ExitStack() as cleanup:
            _scanned_data_set(stream, size, parsed, limits, 0, findings, cleanup)
        return parsed


def read_frame_head(source: Source, pixel: PixelDataElement, index: int, max_bytes: int
                    ) -> bytes | None:
    """The first ``max_bytes`` of frame ``index`` of the scanned, encapsulated ``pixel``
    data of the (not deflated) file at ``source``; see :func:`structure.frame_head`."""
    with _seekable(source) as (stream, _):
        return frame_head(stream, pixel, index, max_bytes)


def read_transfer_syntax(source: Source, limits: Limits, findings: Findings) -> UID | None:
    """The transfer syntax the file meta information names; None, its findings added, when
    there is none to read. What a reader checks before it commits to the data set."""
    with _seekable(source) as (stream, name):
        parsed = ParsedInstance(name=name, size=_stream_size(stream))
        with findings.last_resort():
            if not _has_preamble(stream):
                findings.add("format.preamble", "no 'DICM' prefix after a 128-byte preamble")
            else:
                _read_meta(stream, parsed.size, parsed, limits, findings)
        return parsed.transfer_syntax


def _read_stream(
    stream: IO[bytes], size: int, parsed: ParsedInstance, config: ValidatorConfig,
    findings: Findings,
) -> None:
    with ExitStack() as cleanup:
        data_set = _scanned_data_set(stream, size, parsed, config.limits, config.defer_size,
                                     findings, cleanup)
        if data_set is None:
            return
        deflated = bool(parsed.transfer_syntax and parsed.transfer_syntax.is_deflated)
        parsed.dataset = _read_dataset(data_set, deflated, config, findings, parsed.wrong_widths)
        if parsed.dataset is not None and deflated:
            # Its deferred values are read back from the inflated copy (the metadata's DICOM
            # JSON does so after validation): the copy lives, and is deleted, with it.
            weakref.finalize(parsed.dataset, cleanup.pop_all().close)


def _scanned_data_set(
    stream: IO[bytes], size: int, parsed: ParsedInstance, limits: Limits, defer_size: int,
    findings: Findings, cleanup: ExitStack,
) -> IO[bytes] | None:
    """What pydicom is to read once the first pass finds the file sound (the file, or the
    inflated data set of a deflated one, which ``cleanup`` deletes), ending where the data
    set does; None when it is not sound, its findings added. ``defer_size`` is that of the
    pydicom read to follow (0: it reads no top-level value but group 0028)."""
    if not _has_preamble(stream):
        findings.add("format.preamble", "no 'DICM' prefix after a 128-byte preamble")
        return None
    if not _read_meta(stream, size, parsed, limits, findings):
        return None
    return _scan_structure(stream, size, parsed, limits, defer_size, findings, cleanup)


def _digest(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _has_preamble(stream: IO[bytes]) -> bool:
    head = stream.read(PREAMBLE_LENGTH + 4)
    return len(head) == PREAMBLE_LENGTH + 4 and head[PREAMBLE_LENGTH:] == b"DICM"


def _read_meta(
    stream: IO[bytes], size: int, parsed: ParsedInstance, limits: Limits, findings: Findings
) -> bool:
    try:
        raw_meta = read_file_meta(stream, size, limits)
    except LimitExceeded as exc:
        findings.add(exc.rule, f"the file meta information is too large: {exc.what}")
        return False
    except (Truncated, Garbled) as exc:
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
    stream: IO[bytes], size: int, parsed: ParsedInstance, limits: Limits, defer_size: int,
    findings: Findings, cleanup: ExitStack,
) -> IO[bytes] | None:
    syntax = parsed.transfer_syntax
    assert syntax is not None
    start = stream.tell()
    if start >= size:
        findings.add("format.empty-dataset", "nothing follows the file meta information")
        return None
    data_set, end = stream, size
    try:
        if syntax.is_deflated:
            data_set = cleanup.enter_context(_inflated(stream, start, limits.max_inflated_bytes))
            end = _stream_size(data_set)
        scanner = scan_data_set(data_set, end, syntax, limits, defer_size)
    except LimitExceeded as exc:
        findings.add(exc.rule, exc.what)
        return None
    except Truncated as exc:
        findings.add("format.truncated", f"the file ends inside {exc.what}")
        return None
    except Garbled as exc:
        findings.add("format.structure", f"the data set is garbled: {exc.what}", exc.tag)
        return None
    except zlib.error:
        findings.add("format.structure", "the deflated data set cannot be inflated")
        return None
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
        data_set = cast(IO[bytes], _Window(data_set, scanner.padding_start))
    if scanner.implicit != syntax.is_implicit_VR:
        findings.add("format.vr-encoding", "the data set's VR encoding differs from the one "
                     "TransferSyntaxUID names", TRANSFER_SYNTAX_UID)
    parsed.pixel_data = scanner.pixel_data
    parsed.frame_size_values = scanner.frame_size_values
    parsed.estimated_bytes = scanner.estimated_bytes
    return data_set






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


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return tag in PIXEL_DATA_TAGS


def _pydicom_read(data_set: IO[bytes], deflated: bool, defer_size: int) -> Dataset:
    """pydicom's reading of a whole file, or of an inflated data set alone (a deflated file:
    Deflated Explicit VR Little Endian is explicit VR, little endian once inflated). The
    latter is wrapped as a file data set over the inflated stream, so that deferred values
    are read back from it, as they are from a file; its file meta is ``ParsedInstance.meta``.
    """
    data_set.seek(0)
    if deflated:
        inflated = cast(BinaryIO, data_set)
        dataset = read_dataset(inflated, is_implicit_VR=False, is_little_endian=True,
                               stop_when=_at_pixel_data, defer_size=defer_size)
        return FileDataset(inflated, dataset, preamble=None, file_meta=FileMetaDataset(),
                           is_implicit_VR=False, is_little_endian=True)
    return pydicom.dcmread(data_set, defer_size=defer_size, stop_before_pixels=True)


def _read_dataset(
    data_set: IO[bytes], deflated: bool, config: ValidatorConfig, findings: Findings,
    wrong_widths: list[WrongWidth],
) -> Dataset | None:
    try:
        dataset = _pydicom_read(data_set, deflated, config.defer_size)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbled input
        findings.add("format.dataset", f"the data set cannot be read ({type(exc).__name__})")
        return None
    failed_tag = _decode(dataset, wrong_widths)
    if failed_tag is not None:
        findings.add("format.dataset", "the element's value cannot be decoded", failed_tag)
        return None
    if len(dataset) == 0:
        findings.add("format.empty-dataset", "the data set holds no elements")
        return None
    return dataset


def _elements_as_read(dataset: Dataset) -> Iterator[RawDataElement | DataElement]:
    """The data set's top-level elements in tag order, deferred values left unread.

    pydicom's own ``Dataset.elements()`` reads every deferred value back: a private blob of
    a gigabyte would be loaded whole.
    """
    for tag in sorted(dataset.keys()):
        yield dataset.get_item(tag, keep_deferred=True)


def _is_deferred(raw: RawDataElement | DataElement) -> bool:
    return isinstance(raw, RawDataElement) and raw.value is None and raw.length > 0


def loaded_elements(dataset: Dataset) -> Iterator[DataElement]:
    """The data set's top-level elements, decoded, leaving deferred values on disk.

    Deferred values (larger than ``defer_size``) are binary blobs that no rule reads; touching
    them would read them back from a file that may be closed or far too large.
    """
    for raw in _elements_as_read(dataset):
        if not _is_deferred(raw):
            yield dataset[raw.tag]


def deferred_elements(dataset: Dataset) -> dict[int, str]:
    """The top-level elements whose values the read left on disk (see
    :func:`loaded_elements`), by tag, with their VR: the file's, or else the dictionary's
    (the word one, where it allows a byte or a word one), or UN for a tag it does not know."""
    return {int(raw.tag): str(raw.VR) if raw.VR else _dictionary_vr(int(raw.tag))
            for raw in _elements_as_read(dataset) if _is_deferred(raw)}


def _dictionary_vr(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return "OW" if "OW" in vr else vr.split(" or ")[0]


def walk_elements(dataset: Dataset) -> Iterator[DataElement]:
    """:func:`loaded_elements`, descending into every sequence item."""
    for element in loaded_elements(dataset):
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from walk_elements(item)


def _decode(dataset: Dataset, wrong_widths: list[WrongWidth]) -> int | None:
    """:func:`_first_undecodable` of the file meta, then of the data set. pydicom leaves
    the file meta's values but the transfer syntax undecoded, and the conformance locator
    reads them all."""
    for part in (getattr(dataset, "file_meta", None) or Dataset(), dataset):
        failed = _first_undecodable(part, wrong_widths)
        if failed is not None:
            return failed
    return None


def _first_undecodable(dataset: Dataset, wrong_widths: list[WrongWidth], prefix: str = ""
                       ) -> int | None:
    """Decode every element once, sequences included; the tag of the first that fails.

    Deferred values stay on disk, but for sequences: the DICOM JSON gives them whole, and
    what their items hold is bounded by the limits as every item's is. Each element's
    width is judged first, from its header, deferred or not: one that is no whole number of
    values is listed in ``wrong_widths`` and read as empty (see :class:`WrongWidth`).
    """
    for raw in _elements_as_read(dataset):
        if isinstance(raw, RawDataElement):
            vr = _vr_read_as(raw, dataset)
            width = NUMBER_WIDTHS.get(vr.split(" or ")[0])  # "US or SS": 2 bytes either way
            length = raw.length if raw.value is None else len(raw.value)
            if width is not None and length % width:
                path = f"{prefix}{element_name(raw.tag)}" if prefix else None
                wrong_widths.append(WrongWidth(int(raw.tag), vr, length, width, path))
                dataset[raw.tag] = raw._replace(value=b"", length=0)
            elif vr != "SQ" and _is_deferred(raw):
                continue
        try:
            element = dataset[raw.tag]
        except Exception:  # noqa: BLE001 - any decoding failure of any element is the finding
            return int(raw.tag)
        if element.VR == "SQ":
            for index, item in enumerate(element.value, start=1):
                failed = _first_undecodable(item, wrong_widths,
                                            f"{prefix}{element_name(raw.tag)}[{index}]/")
                if failed is not None:
                    return failed
    return None


def _vr_read_as(raw: RawDataElement, dataset: Dataset) -> str:
    """The VR pydicom reads ``raw``'s value by: its own choice (the file's VR; for implicit
    VR or UN, the dictionary's or the private dictionary's), made before the value is read.
    A deferred value is read back with its bytes, and a standard UN element of
    :data:`_LONG_UN` bytes or more then stays UN."""
    if (raw.VR == "UN" and _is_deferred(raw) and not raw.tag.is_private
            and raw.length >= _LONG_UN):
        return "UN"
    chosen: dict[str, Any] = {}
    hooks.raw_element_vr(raw, chosen, ds=dataset)
    return str(chosen["VR"])


def sha256_of(source: Source) -> str:
    """Hex SHA-256 of the whole file, read in chunks (for duplicates and ``metadata.json``)."""
    with _seekable(source) as (stream, _):
        return _digest(stream)
