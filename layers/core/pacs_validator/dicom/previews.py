"""Series previews: a small PNG of one instance, as a viewer would first show it.

A preview is for recognising a series at a glance, not for reading it: the middle frame,
windowed (the instance's own Window Center/Width, else a robust percentile window so that a
few extreme pixels do not wash the image out), MONOCHROME1 inverted so that air is black,
colour converted to RGB, and the longest side scaled to ``PREVIEW_SIZE`` pixels.

Decoding uses pydicom's pixel handlers, which find the decoders installed with the
``previews`` extra (pylibjpeg and its plugins for JPEG, JPEG 2000 and RLE, pyjpegls for
JPEG-LS). Pixels that cannot be decoded give no preview and a ``preview.undecodable``
warning: a preview is a convenience and never fails a study.

The work is bounded whatever the file (see :mod:`pacs_validator.dicom.limits`): its
structure is scanned within the limits before pydicom reads its header, a frame is decoded
only when its declared size is within ``max_preview_frame_bytes`` (else a
``preview.too-large`` warning), and the decoded frame is reduced block by block in its own
integer type before anything is computed in floating point, so no float copy of a whole
frame is ever made.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array

from pacs_validator.dicom.config import build_config
from pacs_validator.dicom.limits import Limits
from pacs_validator.dicom.parsing import (
    ParsedInstance,
    read_frame_head,
    read_transfer_syntax,
    scan_instance,
)
from pacs_validator.dicom.pixels import (
    PIXEL_DATA,
    codestream_frame_bytes,
    declared_frame_bytes,
    declares_frame_size,
)
from pacs_validator.dicom.rules import Finding, Findings, RuleBook, Severity
from pacs_validator.dicom.structure import LIMIT_RULES

PREVIEW_SIZE = 256
"""Longest side of a preview, in pixels."""
PERCENTILE_WINDOW = (0.5, 99.5)
"""The window used when an instance has none of its own: these percentiles of its values."""
CODESTREAM_HEADER_BYTES = 256 * 1024
"""How much of a frame's first fragment is read for the codestream's size header: JPEG
segments before it (APPn, tables) are at most 64 KiB each, and there are seldom more
than a few."""

Source = str | PathLike[str] | BinaryIO


@dataclass(frozen=True)
class Preview:
    """What rendering an instance gave: a PNG, or None and the findings that say why not.

    An instance without pixel data (a structured report, say) has neither a PNG nor a
    finding: there is nothing to show, and nothing wrong.
    """

    png: bytes | None
    findings: tuple[Finding, ...] = ()


def render_preview(
    source: Source, rules: RuleBook, size: int = PREVIEW_SIZE, limits: Limits | None = None
) -> Preview:
    """A PNG preview of the instance at ``source`` (a path, or a seekable binary stream
    positioned at its start), its longest side ``size`` pixels.

    Only the middle frame is decoded, and from a path only that frame's bytes are read, so
    a large multi-frame instance costs one frame. pydicom parses the file once, for that
    frame and the group 0028 attributes that display it. ``limits`` are the
    configuration's (by default those of ``data/config.json``).
    """
    limits = limits or build_config().limits
    findings = Findings(rules)
    try:
        scanned = _scanned(source, limits)
        if scanned.pixel_data is None:
            return Preview(None)
        frame_index = _middle_frame_within_limits(scanned, limits)
        _check_codestream_size(source, scanned, frame_index, limits)
        frame, display = _decoded_frame(source, frame_index, limits)
        png = _png(_to_8bit(_reduced(frame, size, display), display), size)
    except _NoPreview as refusal:
        findings.add(refusal.rule, refusal.message, tag=PIXEL_DATA)
        return Preview(None, tuple(findings.items))
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "no preview", never a failed study
        findings.add("preview.undecodable",
                     f"the pixel data could not be decoded for a preview ({type(exc).__name__})",
                     tag=PIXEL_DATA)
        return Preview(None, tuple(findings.items))
    return Preview(png)


def _decoded_frame(source: Source, index: int, limits: Limits
                   ) -> tuple[NDArray[Any], Dataset]:
    """Frame ``index`` of the instance, and the attributes that display it.

    pydicom's frame reader trusts the file meta's transfer syntax, while its data set reader
    notices a data set encoded otherwise (implicit VR under an explicit VR syntax, as in
    pydicom's own SC_rgb_jpeg.dcm) and reads it as it is. So when the frame reader fails
    on a file no larger than one frame may be, the whole file is read and the frame taken
    from it: that costs no more memory than the frame alone is allowed.
    """
    start = _tell(source)
    display = Dataset()
    try:
        return pixel_array(source, index=index, ds_out=display), display
    except ValueError:
        if _size(source) > limits.max_preview_frame_bytes:
            raise
    _seek(source, start)
    dataset = dcmread(source)
    return pixel_array(dataset, index=index), dataset


def _size(source: Source) -> int:
    """How many bytes the instance at ``source`` has (from its position to the end)."""
    if isinstance(source, (str, PathLike)):
        return Path(source).stat().st_size
    position = source.tell()
    end = source.seek(0, os.SEEK_END)
    source.seek(position)
    return end - position


class _NoPreview(Exception):
    """Why an instance gets no preview, found before its pixels are decoded."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _scanned(source: Source, limits: Limits) -> ParsedInstance:
    """The structural scan of ``source`` (left where it was), before pydicom reads it.

    The scan runs with every rule on (the deployment's switches are for verdicts, not for
    what is safe to read): a file over a limit is too large to preview, an unsound one
    cannot be decoded, and a deflated one neither (pydicom decodes no frame of it, and
    would inflate its data set in memory), so it is refused before it is inflated.
    """
    start = _tell(source)
    scan = Findings(RuleBook())
    syntax = read_transfer_syntax(source, limits, scan)
    _seek(source, start)
    if syntax is not None and syntax.is_deflated:
        raise _NoPreview("preview.undecodable", "frames of a deflated data set are not decoded")
    scanned = scan_instance(source, limits, scan) if syntax is not None else None
    _seek(source, start)
    errors = [finding.rule for finding in scan.items if finding.severity is Severity.ERROR]
    over = [rule for rule in errors if rule in LIMIT_RULES]
    if over:
        raise _NoPreview("preview.too-large", f"the file is over a structural limit ({over[0]})")
    if errors or scanned is None:
        raise _NoPreview("preview.undecodable", "the file's structure is unsound "
                         f"({errors[0] if errors else 'no transfer syntax'})")
    return scanned


def _middle_frame_within_limits(scanned: ParsedInstance, limits: Limits) -> int:
    """The index of the middle frame (of one, the only one), once the declared frame size
    and count are known to be within ``limits``."""
    values = scanned.frame_size_values
    assert scanned.pixel_data is not None
    frame_bytes = declared_frame_bytes(values, scanned.pixel_data.tag)
    if frame_bytes is not None and frame_bytes > limits.max_preview_frame_bytes:
        raise _NoPreview("preview.too-large", "a frame decodes to more than "
                         f"{limits.max_preview_frame_bytes} bytes")
    frames = values.get("NumberOfFrames", 1)
    if frames > limits.max_frames:
        raise _NoPreview("preview.too-large", f"NumberOfFrames is over {limits.max_frames}")
    return frames // 2


def _check_codestream_size(
    source: Source, scanned: ParsedInstance, index: int, limits: Limits
) -> None:
    """Raise _NoPreview unless the JPEG or JPEG 2000 codestream of frame ``index`` declares
    a size within ``limits``: its decoder allocates what the codestream says, whatever
    Rows and Columns say. Other syntaxes have no such header (RLE decodes to Rows x
    Columns) or no decoder (video)."""
    pixel, syntax = scanned.pixel_data, scanned.transfer_syntax
    if pixel is None or pixel.length is not None or syntax is None:
        return
    if not declares_frame_size(str(syntax)):
        return
    start = _tell(source)
    head = read_frame_head(source, pixel, index, CODESTREAM_HEADER_BYTES)
    _seek(source, start)
    declared = codestream_frame_bytes(head or b"")
    if declared is None:
        raise _NoPreview("preview.undecodable", "the frame's codestream declares no size")
    if declared > limits.max_preview_frame_bytes:
        raise _NoPreview("preview.too-large", "the frame's codestream declares more than "
                         f"{limits.max_preview_frame_bytes} bytes")


def _tell(source: Source) -> int | None:
    return source.tell() if hasattr(source, "tell") else None


def _seek(source: Source, position: int | None) -> None:
    if position is not None and hasattr(source, "seek"):
        source.seek(position)


def _reduced(frame: NDArray[Any], size: int, dataset: Dataset) -> NDArray[Any]:
    """``frame`` shrunk by a whole factor to no fewer than ``size`` pixels on its longest
    side: block means, summed a band of rows at a time in integers (floats for float pixel
    data) and returned in the frame's dtype, so that no copy of the whole frame is made.
    Palette indices are labels, not quantities to average: each band is looked up in the
    palette first, and the palette's RGB is averaged."""
    palette = str(dataset.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR"

    def samples(rows: NDArray[Any]) -> NDArray[Any]:
        looked_up: NDArray[Any] = apply_color_lut(rows, dataset) if palette else rows
        return looked_up

    factor = max(frame.shape[:2]) // size
    if factor <= 1:
        return samples(frame)
    rows, columns = frame.shape[0] // factor, frame.shape[1] // factor
    total = np.float64 if frame.dtype.kind == "f" else np.int64

    def band_means(row: int) -> NDArray[Any]:
        band = samples(frame[row * factor:(row + 1) * factor, :columns * factor])
        blocks = band.reshape(factor, columns, factor, *band.shape[2:])
        sums = blocks.sum(axis=(0, 2), dtype=total)
        means: NDArray[Any] = (sums / factor**2 if total is np.float64 else sums // factor**2)
        return means.astype(band.dtype)

    return np.stack([band_means(row) for row in range(rows)])


def _to_8bit(frame: NDArray[Any], dataset: Dataset) -> NDArray[np.uint8]:
    """Display values 0-255 of a reduced frame: colour scaled, grey levels windowed."""
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":  # looked up already, by _reduced
        return _scaled(frame, float(np.iinfo(frame.dtype).max))
    if frame.ndim == 3:
        bits = int(dataset.get("BitsStored") or dataset.get("BitsAllocated") or 8)
        return _scaled(frame, float(2**bits - 1))
    grey = _windowed(apply_modality_lut(frame, dataset).astype(np.float64), dataset)
    if photometric == "MONOCHROME1":
        grey = 1.0 - grey
    return _scaled(grey, 1.0)


def _windowed(values: NDArray[np.float64], dataset: Dataset) -> NDArray[np.float64]:
    """``values`` mapped onto 0-1 through the instance's first window, or, when it has no
    usable window, through the percentile window of its own values."""
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        try:
            windowed = apply_voi_lut(values, dataset, index=0, prefer_lut=False)
            return _onto_unit(windowed, *_window_output_range(dataset))
        except (ValueError, TypeError, IndexError):
            pass  # a malformed window (zero width, not a number): fall back to percentiles
    low, high = np.percentile(values, PERCENTILE_WINDOW)
    return _onto_unit(values, float(low), float(high))


def _onto_unit(values: NDArray[Any], low: float, high: float) -> NDArray[np.float64]:
    """``low``..``high`` mapped linearly onto 0..1, clipped (a flat image maps to 0)."""
    mapped: NDArray[np.float64] = np.clip((values - low) / ((high - low) or 1.0), 0.0, 1.0)
    return mapped


def _window_output_range(dataset: Dataset) -> tuple[float, float]:
    """The output range pydicom's windowing maps onto (it depends on the stored bits and the
    rescale), found by windowing two values far outside the window on either side."""
    center, width = (float(_first(dataset.get(k))) for k in ("WindowCenter", "WindowWidth"))
    probe = np.array([center - 8 * abs(width), center + 8 * abs(width)], dtype=np.float64)
    low, high = apply_voi_lut(probe, dataset, index=0, prefer_lut=False)
    return float(low), float(high)


def _first(value: Any) -> Any:
    """The first of a multi-valued attribute, or the value itself."""
    return value[0] if isinstance(value, MultiValue) else value


def _scaled(values: NDArray[Any], maximum: float) -> NDArray[np.uint8]:
    scaled = np.clip(values.astype(np.float64) * (255.0 / maximum), 0, 255)
    return np.rint(scaled).astype(np.uint8)


def _png(pixels: NDArray[np.uint8], size: int) -> bytes:
    """``pixels`` (rows x columns, or rows x columns x 3) as a PNG, longest side ``size``."""
    image = Image.fromarray(pixels)
    scale = size / max(image.size)
    width, height = (max(1, round(side * scale)) for side in image.size)
    buffer = io.BytesIO()
    image.resize((width, height), Image.Resampling.LANCZOS).save(buffer, format="PNG")
    return buffer.getvalue()
