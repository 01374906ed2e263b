"""Pixel data integrity, judged from element headers and the Image Pixel attributes alone.

Pixel values are never decoded or loaded: native pixel data is checked by its length, and
encapsulated pixel data by its offset tables and by the first bytes of each fragment, where
every JPEG-family and JPEG 2000 frame starts with a codestream marker. This keeps a 1 GB
multi-frame file as cheap to validate as a small one.

The declared matrix is checked against the configured limits before anything else: a 1 MB
RLE file may declare a frame of gigabytes, and whoever decodes it later (a preview, a
viewer) would need them all.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import UID, MPEGTransferSyntaxes, RLELossless

from pacs_validator.dicom.iod import mandatory_attributes
from pacs_validator.dicom.limits import Limits
from pacs_validator.dicom.rules import Findings
from pacs_validator.dicom.structure import (
    J2K_START_OF_CODESTREAM,
    JPEG_START_OF_IMAGE,
    Fragments,
    PixelDataElement,
)

PIXEL_DATA = 0x7FE00010
NUMBER_OF_FRAMES = 0x00280008
BITS_ALLOCATED = 0x00280100
BITS_STORED = 0x00280101
HIGH_BIT = 0x00280102
PHOTOMETRIC_INTERPRETATION = 0x00280004
ROWS = 0x00280010
FLOAT_BITS_ALLOCATED = {0x7FE00008: 32, 0x7FE00009: 64}
"""BitsAllocated of Float and Double Float Pixel Data, where the attribute may be absent."""

SAMPLES_FOR_PHOTOMETRIC = {
    "MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1,
    "RGB": 3, "HSV": 3, "YBR_FULL": 3, "YBR_FULL_422": 3, "YBR_PARTIAL_422": 3,
    "YBR_PARTIAL_420": 3, "YBR_ICT": 3, "YBR_RCT": 3, "ARGB": 4, "CMYK": 4,
}
_J2K_FAMILY = frozenset(
    {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92",
     "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
     "1.2.840.10008.1.2.4.203"}
)
_JPEG_FAMILY = frozenset(
    {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
     "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
)


_JPEG_START_OF_FRAME = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
)
"""SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC); and JPEG-LS SOF55 (F7)."""
_JPEG_START_OF_SCAN = 0xDA
_VIDEO = frozenset(MPEGTransferSyntaxes)
"""MPEG-2, MPEG-4 AVC and HEVC: one video stream split into fragments of any size, so
fragments do not map to frames (PS3.5 8.2.5-8.2.8)."""


@dataclass(frozen=True)
class ImagePixel:
    """The Image Pixel attributes that pixel data length depends on."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    frames: int
    photometric: str | None

    def frame_bytes(self) -> int:
        """Bytes of one decoded frame."""
        return frame_bytes(self.rows, self.columns, self.samples_per_pixel, self.bits_allocated)

    def expected_native_length(self) -> int:
        """Bytes of native pixel data, before the pad byte that makes lengths even."""
        bits = self.rows * self.columns * self.samples_per_pixel * self.bits_allocated * self.frames
        if self.photometric in ("YBR_FULL_422", "YBR_PARTIAL_422"):
            bits = bits * 2 // 3  # two chroma samples are shared by each pair of pixels
        return (bits + 7) // 8


def frame_bytes(rows: int, columns: int, samples_per_pixel: int, bits_allocated: int) -> int:
    """Bytes of one decoded frame: Rows x Columns x SamplesPerPixel x bytes per sample."""
    return (rows * columns * samples_per_pixel * bits_allocated + 7) // 8


def declared_frame_bytes(values: Mapping[str, int], pixel_tag: int) -> int | None:
    """Bytes one frame decodes to, from Image Pixel values by keyword (as the structural
    scan reads them); None when Rows, Columns or BitsAllocated is missing."""
    rows, columns = values.get("Rows"), values.get("Columns")
    bits = values.get("BitsAllocated", FLOAT_BITS_ALLOCATED.get(pixel_tag))
    if rows is None or columns is None or bits is None:
        return None
    return frame_bytes(rows, columns, values.get("SamplesPerPixel", 1), bits)


def _integer(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _positive_int(dataset: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = dataset.get(keyword)
    if value is None or value == "":
        return default
    number = _integer(value)
    return number if number is not None and number > 0 else None


def _image_pixel(
    dataset: Dataset, pixel: PixelDataElement, findings: Findings
) -> ImagePixel | None:
    names = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "NumberOfFrames")
    defaults: dict[str, int | None] = {"SamplesPerPixel": 1, "NumberOfFrames": 1}
    if pixel.tag in FLOAT_BITS_ALLOCATED:
        defaults["BitsAllocated"] = FLOAT_BITS_ALLOCATED[pixel.tag]
    numbers = {name: _positive_int(dataset, name, defaults.get(name)) for name in names}
    missing = [name for name, number in numbers.items() if number is None]
    for name in missing:
        findings.add("pixel.attributes", f"{name} is missing or not a positive integer",
                     tag_for_keyword(name))
    if missing:
        return None
    photometric = dataset.get("PhotometricInterpretation")
    return ImagePixel(
        rows=numbers["Rows"] or 0,
        columns=numbers["Columns"] or 0,
        samples_per_pixel=numbers["SamplesPerPixel"] or 0,
        bits_allocated=numbers["BitsAllocated"] or 0,
        frames=numbers["NumberOfFrames"] or 0,
        photometric=str(photometric).strip() if photometric else None,
    )


def check_pixel_data(
    dataset: Dataset,
    pixel: PixelDataElement | None,
    transfer_syntax: UID,
    limits: Limits,
    findings: Findings,
) -> None:
    """All pixel rules for one instance."""
    if pixel is None:
        _check_pixel_expected(dataset, findings)
        return
    image = _image_pixel(dataset, pixel, findings)
    if image is None or not _within_matrix_limits(image, limits, findings):
        return
    _check_bits(dataset, image, findings)
    _check_photometric(image, findings)
    if pixel.length is not None:
        if transfer_syntax.is_encapsulated and pixel.tag == PIXEL_DATA:
            findings.add("pixel.encapsulation", "PixelData has a defined length but the transfer "
                         "syntax is encapsulated", pixel.tag)
            return
        _check_native_length(image, pixel.length, pixel.tag, findings)
        return
    if not transfer_syntax.is_encapsulated:
        findings.add("pixel.encapsulation", "PixelData is encapsulated but the transfer syntax "
                     "is native", pixel.tag)
        return
    _check_encapsulated(image, pixel, transfer_syntax, findings)


def _within_matrix_limits(image: ImagePixel, limits: Limits, findings: Findings) -> bool:
    """Whether the declared frame size and frame count are within ``limits``; a
    ``pixel.matrix-size`` finding for each that is not."""
    within = True
    if image.frame_bytes() > limits.max_frame_bytes:
        findings.add("pixel.matrix-size", "Rows x Columns x SamplesPerPixel x BitsAllocated "
                     f"decodes to more than {limits.max_frame_bytes} bytes a frame", ROWS)
        within = False
    if image.frames > limits.max_frames:
        findings.add("pixel.matrix-size", f"NumberOfFrames is over {limits.max_frames}",
                     NUMBER_OF_FRAMES)
        within = False
    return within


def _check_pixel_expected(dataset: Dataset, findings: Findings) -> None:
    sop_class = str(dataset.get("SOPClassUID", ""))
    if "PixelDataProviderURL" in dataset:
        return
    if any(a.tag == ROWS for a in mandatory_attributes(sop_class)):
        findings.add("pixel.missing", "the IOD has an Image Pixel module but PixelData is absent",
                     PIXEL_DATA)


def _check_bits(dataset: Dataset, image: ImagePixel, findings: Findings) -> None:
    allocated = image.bits_allocated
    if allocated != 1 and allocated % 8:
        findings.add("pixel.bits", "BitsAllocated is neither 1 nor a multiple of 8", BITS_ALLOCATED)
    stored = _positive_int(dataset, "BitsStored")
    if "BitsStored" in dataset and (stored is None or stored > allocated):
        findings.add("pixel.bits", "BitsStored is not between 1 and BitsAllocated", BITS_STORED)
    if "HighBit" in dataset:
        high_bit = _integer(dataset.HighBit)
        if high_bit is None or not 0 <= high_bit < allocated:
            findings.add("pixel.bits", "HighBit is outside BitsAllocated", HIGH_BIT)


def _check_photometric(image: ImagePixel, findings: Findings) -> None:
    expected = SAMPLES_FOR_PHOTOMETRIC.get(image.photometric or "")
    if expected is not None and expected != image.samples_per_pixel:
        findings.add("pixel.photometric", "SamplesPerPixel does not match "
                     "PhotometricInterpretation", PHOTOMETRIC_INTERPRETATION)


def _check_native_length(image: ImagePixel, length: int, tag: int, findings: Findings) -> None:
    expected = image.expected_native_length()
    if length not in (expected, expected + expected % 2):
        relation = "shorter" if length < expected else "longer"
        findings.add("pixel.native-length", f"the pixel data is {relation} than Rows x Columns x "
                     "SamplesPerPixel x BitsAllocated x NumberOfFrames requires", tag)


def declares_frame_size(transfer_syntax: str) -> bool:
    """Whether each frame is a JPEG-family or JPEG 2000 codestream, whose header declares
    the frame's size (RLE has no such header: its decoders use Rows and Columns)."""
    return transfer_syntax in _JPEG_FAMILY or transfer_syntax in _J2K_FAMILY


def codestream_frame_bytes(head: bytes) -> int | None:
    """Bytes the codestream starting ``head`` decodes to, from its own header (JPEG and
    JPEG-LS SOF, JPEG 2000 SIZ); None when ``head`` holds no such header.

    Decoders allocate what the codestream declares, whatever Rows and Columns say: a 3 KB
    JPEG claiming 30000 x 30000 pixels made libjpeg fill gigabytes.
    """
    if head.startswith(JPEG_START_OF_IMAGE):
        return _jpeg_frame_bytes(head)
    siz = head.find(J2K_START_OF_CODESTREAM)  # at the start, or in a JP2 file's jp2c box
    return _j2k_frame_bytes(head, siz + 2) if siz >= 0 else None


def _j2k_frame_bytes(head: bytes, siz: int) -> int | None:
    """From the SIZ segment at ``siz``: image extent minus offsets, components, and the
    first component's precision (ISO 15444-1 A.5.1)."""
    if len(head) < siz + 41:
        return None
    width, height, x_offset, y_offset = struct.unpack_from(">4L", head, siz + 6)
    components, first_precision = struct.unpack_from(">HB", head, siz + 38)
    bits = (first_precision & 0x7F) + 1
    return frame_bytes(height - y_offset, width - x_offset, components, _whole_bytes(bits) * 8)


def _jpeg_frame_bytes(head: bytes) -> int | None:
    """From the first SOF segment (ISO 10918-1 B.2.2, ISO 14495-1 SOF55), walking the
    segments before it; None when the scan (SOS) comes first or ``head`` ends."""
    position = 2
    while position + 9 <= len(head) and head[position] == 0xFF:
        marker = head[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        if marker in _JPEG_START_OF_FRAME:
            bits, height, width, components = struct.unpack_from(">BHHB", head, position + 4)
            return frame_bytes(height, width, components, _whole_bytes(bits) * 8)
        if marker == _JPEG_START_OF_SCAN:
            return None
        position += 2 + struct.unpack_from(">H", head, position + 2)[0]
    return None


def _whole_bytes(bits: int) -> int:
    return (bits + 7) // 8


def frame_starts(fragments: Fragments, transfer_syntax: str) -> int | None:
    """How many fragments begin a frame, from codestream markers; None when unknowable."""
    if transfer_syntax in _JPEG_FAMILY:
        return fragments.jpeg_starts
    if transfer_syntax in _J2K_FAMILY:
        return fragments.j2k_starts
    if transfer_syntax == RLELossless:
        return fragments.count  # PS3.5 A.4.2: exactly one fragment per RLE frame
    return None


def _check_encapsulated(
    image: ImagePixel, pixel: PixelDataElement, transfer_syntax: UID, findings: Findings
) -> None:
    fragments = pixel.fragments
    if fragments is None or fragments.count == 0:
        findings.add("pixel.encapsulation", "encapsulated PixelData holds no fragment", pixel.tag)
        return
    if str(transfer_syntax) in _VIDEO:
        return
    frames = image.frames
    if pixel.offset_table:
        _check_offset_table(pixel.offset_table, fragments, frames, pixel.tag, findings)
    extended = pixel.extended_offset_table_length
    if extended is not None and extended // 8 != frames:
        findings.add("pixel.frame-count", "the extended offset table has an entry count other "
                     "than NumberOfFrames", NUMBER_OF_FRAMES)
    starts = frame_starts(fragments, str(transfer_syntax))
    if starts is not None and starts != frames:
        findings.add("pixel.frame-count", f"the fragments hold {starts} frame(s); "
                     f"NumberOfFrames says {frames}", NUMBER_OF_FRAMES)
    elif starts is None and fragments.count < frames:
        findings.add("pixel.frame-count", "there are fewer fragments than NumberOfFrames",
                     NUMBER_OF_FRAMES)


def _check_offset_table(
    table: Sequence[int], fragments: Fragments, frames: int, tag: int, findings: Findings
) -> None:
    if len(table) != frames:
        findings.add("pixel.frame-count", f"the basic offset table has {len(table)} entries; "
                     f"NumberOfFrames says {frames}", NUMBER_OF_FRAMES)
        return
    if table[0] != 0 or not fragments.offsets_at_item_starts:
        findings.add("pixel.encapsulation", "the basic offset table does not point at fragment "
                     "starts", tag)
