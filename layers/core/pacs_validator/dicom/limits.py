"""Caps that bound the work any input can cause, however it is crafted.

A few kilobytes can declare gigabytes: a deflate stream of zeros, hundreds of thousands of
empty sequence items, an 8000 x 8000 frame in a 1 MB RLE file. Each cap below is checked
before the work it bounds is done (inflating, pydicom's parse, decoding a frame), so every
file gets a verdict within about 256 MB of memory growth and 5 s of CPU on one Lambda core.
A file over a cap is refused with a finding naming the rule (``format.inflated-size``,
``format.element-count`` ...); an image too large to preview only loses its preview.

The defaults are in ``data/config.json`` (a deployment overrides them under ``"limits"``);
why each is what it is, is said on each field here. Measured costs are those of
``benchmarks/bench_bombs.py`` on a shared 2-vCPU VM.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Limits:
    max_inflated_bytes: int
    """Bytes a Deflated Explicit VR Little Endian data set may inflate to (1 GiB): as much
    as the largest native file the 1 GiB upload cap admits, so a deflated file may hold
    whatever a native one may. Inflating 1 GiB costs about 2.5 s of CPU; it is spooled to
    disk, never held in memory."""
    max_elements: int
    """Data elements at every depth (150 000). pydicom costs about 20 us and 350 bytes per
    element; a 3,000-frame enhanced multi-frame with per-frame functional groups has about
    50 000, a large RT structure set about 100 000."""
    max_items: int
    """Sequence items at every depth (50 000). pydicom builds a Dataset per item, about
    27 us and 650 bytes each; a 3,000-frame enhanced multi-frame has about 25 000."""
    max_nesting_depth: int
    """Sequences within sequences (64). Real data sets nest a handful of levels; a
    structured report's content tree perhaps 20."""
    max_fragments: int
    """Items of encapsulated pixel data (1 000 000): one or a few per frame, so a
    whole-slide image of a million tiles. Counting them costs about 1 us each."""
    max_frames: int
    """NumberOfFrames (1 000 000), as many as fragments: each frame needs one."""
    max_frame_bytes: int
    """Rows x Columns x SamplesPerPixel x bytes per sample of one decoded frame (1 GiB): ten
    times a 50-megapixel 16-bit mammogram, and more than a native frame can be at the 1 GiB
    upload cap. Whole-slide images are tiled into small frames."""
    max_preview_frame_bytes: int
    """The decoded frame a preview may decode (128 MiB): a 50-megapixel 16-bit mammogram is
    100 MB. Decoders hold about a frame and a half at once, which keeps a preview within
    about 256 MB; a larger frame gets no preview and a ``preview.too-large`` warning."""

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Limits:
        """The limits of a config document's ``limits`` object; ValueError names a bad key."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(document) - names)
        if unknown:
            raise ValueError(f"unknown limit(s): {', '.join(unknown)}")
        missing = sorted(names - set(document))
        if missing:
            raise ValueError(f"missing limit(s): {', '.join(missing)}")
        bad = sorted(name for name, value in document.items()
                     if isinstance(value, bool) or not isinstance(value, int) or value <= 0)
        if bad:
            raise ValueError(f"not a positive integer: {', '.join(bad)}")
        return cls(**document)
