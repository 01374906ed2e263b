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
from dataclasses import dataclass
from os import PathLike
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
from pacs_validator.dicom.parsing import scan_instance
from pacs_validator.dicom.pixels import decoded_frame_bytes
from pacs_validator.dicom.rules import Finding, Findings, RuleBook, Severity
from pacs_validator.dicom.structure import LIMIT_RULES

PREVIEW_SIZE = 256
"""Longest side of a preview, in pixels."""
PERCENTILE_WINDOW = (0.5, 99.5)
"""The window used when an instance has none of its own: these percentiles of its values."""
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

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
    a large multi-frame instance costs one frame. ``limits`` are the configuration's (by
    default those of ``data/config.json``).
    """
    limits = limits or build_config().limits
    findings = Findings(rules)
    try:
        start = _tell(source)
        refusal = _structure_refusal(source, limits)
        _seek(source, start)
        if refusal is not None:
            findings.add(*refusal, tag=0x7FE00010)
            return Preview(None, tuple(findings.items))
        dataset = _header(source)
        if not any(keyword in dataset for keyword in PIXEL_DATA_KEYWORDS):
            return Preview(None)
        frame_bytes = decoded_frame_bytes(dataset)
        if frame_bytes is not None and frame_bytes > limits.max_preview_frame_bytes:
            findings.add("preview.too-large", "a frame decodes to more than "
                         f"{limits.max_preview_frame_bytes} bytes", tag=0x7FE00010)
            return Preview(None, tuple(findings.items))
        frame = _reduced(_decode_middle_frame(source, dataset), size, dataset)
        png = _png(_to_8bit(frame, dataset), size)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "no preview", never a failed study
        findings.add("preview.undecodable",
                     f"the pixel data could not be decoded for a preview ({type(exc).__name__})",
                     tag=0x7FE00010)
        return Preview(None, tuple(findings.items))
    return Preview(png)


def _structure_refusal(source: Source, limits: Limits) -> tuple[str, str] | None:
    """Why pydicom must not read the file: a rule and message, or None.

    The structural scan runs with every rule on (the deployment's switches are for verdicts,
    not for what is safe to read): a file over a limit is too large to preview, an unsound
    one cannot be decoded, and a deflated one neither (pydicom decodes no frame of it, and
    its header read would inflate the data set in memory).
    """
    scan = Findings(RuleBook())
    parsed = scan_instance(source, limits, scan)
    errors = [finding.rule for finding in scan.items if finding.severity is Severity.ERROR]
    over = [rule for rule in errors if rule in LIMIT_RULES]
    if over:
        return "preview.too-large", f"the file is over a structural limit ({over[0]})"
    if errors:
        return "preview.undecodable", f"the file's structure is unsound ({errors[0]})"
    if parsed.transfer_syntax is not None and parsed.transfer_syntax.is_deflated:
        return "preview.undecodable", "frames of a deflated data set are not decoded"
    return None


def _header(source: Source) -> Dataset:
    """Every element but the pixel values, which stay unread (deferred)."""
    start = _tell(source)
    dataset = dcmread(source, defer_size=1024, force=True)
    _seek(source, start)
    return dataset


def _tell(source: Source) -> int | None:
    return source.tell() if hasattr(source, "tell") else None


def _seek(source: Source, position: int | None) -> None:
    if position is not None and hasattr(source, "seek"):
        source.seek(position)


def _decode_middle_frame(source: Source, dataset: Dataset) -> NDArray[Any]:
    """The middle frame (of one, the only one), colour as RGB (pydicom converts YCbCr)."""
    frames = int(dataset.get("NumberOfFrames") or 1)
    frame: NDArray[Any] = pixel_array(source, index=frames // 2)
    return frame


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
