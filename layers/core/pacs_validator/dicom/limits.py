"""Caps that bound the work any input can cause, however it is crafted.

A few kilobytes can declare gigabytes: a deflate stream of zeros, hundreds of thousands of
empty sequence items, an 8000 x 8000 frame in a 1 MB RLE file. Each cap below is checked
before the work it bounds is done (inflating, pydicom's parse, decoding a frame), so every
file gets a verdict within about 256 MB of memory growth and 5 s of CPU on one Lambda core.
A file over a cap is refused with a finding naming the rule (``format.inflated-size``,
``format.element-count`` ...); an image too large to preview only loses its preview. A file
under several caps at once costs the sum of their costs, so the things the scan counts are
also bounded together, by one estimate of what they cost (:func:`estimated_bytes`,
``format.estimated-size``), by which storing also cuts its chunks and paces its threads.

The defaults are in ``data/config.json`` (a deployment overrides them under ``"limits"``);
why each is what it is, is said on each field here. Measured costs are those of
``benchmarks/bench_bombs.py`` on a shared 2-vCPU VM.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

CPU_WEIGHT = 72
"""Bytes of the estimate one microsecond of CPU counts as: a file's budget is 256 MiB of
memory and 3.7 s of CPU above a process's own start (``bench_bombs.py``'s goals are
256 MB of growth and 5 s of CPU, of which about 1.05 s is imports; 0.25 s is left for
noise), 72 bytes a microsecond. Each thing counted below weighs the larger of the memory it
holds and its CPU at this rate, in the command where each costs the most: ``validate``,
``describe`` (validation, description and preview in one process) or a storing chunk
(``bench_bombs.py --weights``, medians of three rounds on a shared 2-vCPU VM, where CPU
figures vary by up to 2x). At 64 bytes a microsecond, a file of items and elements at the
estimate's limit took 5.25 s in ``describe``."""
ELEMENT_WEIGHT = 2_250
"""A data element: 13 to 20 us of CPU in the medians, 21 us (``validate``) and 32 us
(``describe``) across the 99,000 of the "elements at cap" file, counted as 31 us; it holds
730 bytes at most, where a storing chunk keeps its DICOM JSON object."""
ITEM_WEIGHT = 3_600
"""A sequence item (a Dataset): 26 to 62 us of CPU in the medians, 20 and 48 us across the
"items at cap" file, counted as 50 us; it holds 740 bytes at most."""
VALUE_WEIGHT = 460
"""A value (a number, or a backslash-separated string): 450 bytes held where a storing
chunk reads it (a DSfloat or IS object and its DICOM JSON number), 405 in validation;
2 to 6 us of CPU."""
LOADED_BYTE_WEIGHT = 4
"""A byte of a loaded value: a text value is held decoded and in the DICOM JSON a storing
chunk keeps, then in that JSON's encoding when the chunk's part is written: 3.65 bytes a
byte (a binary value, a BulkDataURI there, 1.15; in validation 0.4 to 0.5)."""


def estimated_bytes(elements: int, items: int, values: int, loaded_bytes: int) -> int:
    """What reading, validating and describing a data set of these counts (the structural
    scan's) is estimated to cost, in bytes of memory, CPU counted at :data:`CPU_WEIGHT`.

    One number for both, so that a file's memory and time are bounded by one limit
    (``Limits.max_estimated_bytes``) and a storing chunk is cut by one budget. The weights
    are what ``benchmarks/bench_bombs.py --weights`` measures of each, in the command
    where it costs the most."""
    return (ELEMENT_WEIGHT * elements + ITEM_WEIGHT * items + VALUE_WEIGHT * values
            + LOADED_BYTE_WEIGHT * loaded_bytes)


@dataclass(frozen=True)
class Limits:
    max_inflated_bytes: int
    """Bytes a Deflated Explicit VR Little Endian data set may inflate to (512 MiB). Deflate
    is used for non-image objects (reports, RT plans, presentation states: kilobytes to a
    few megabytes); 512 MiB is five 50-megapixel 16-bit mammograms, or a 2,000-frame
    512 x 512 8-bit cine. Inflating it costs about 2.5 s of CPU (1 GiB cost 5.4 s); it
    is spooled to disk past 8 MiB, never held in memory."""
    max_elements: int
    """Data elements at every depth (100 000). pydicom and the value rules cost about
    30 us each (3.4 s at the cap; 150 000 cost 6 s in ``describe``). A 3,000-frame
    enhanced multi-frame with per-frame functional groups has about 50 000; an RT
    structure set of more than about 25 000 contours would be refused."""
    max_items: int
    """Sequence items at every depth (50 000). pydicom builds a Dataset per item, about
    35 us and 650 bytes each (2 s at the cap); a 3,000-frame enhanced multi-frame has
    about 25 000."""
    max_loaded_bytes: int
    """Bytes of values pydicom holds in memory (64 MiB): the top-level values of at most
    ``defer_size`` bytes, and every value in a sequence item, which pydicom never defers.
    A data set's attributes are kilobytes; a large RT structure set's contours tens of
    megabytes. Large binary values (pixel data, documents, waveforms) are top-level and
    deferred."""
    max_values: int
    """Values of the loaded elements (500 000): pydicom makes a Python object of each number
    and of each backslash-separated string, and validation decodes them all: about 390
    bytes and 3 us apiece (983 000 DS values cost 384 MB). An RT structure set of more
    than about 160 000 contour points is refused: with this validator's memory budget of
    256 MB, RT workflows must raise it (and the memory)."""
    max_nesting_depth: int
    """Sequences within sequences (64, the scan's former fixed bound). Real data sets nest
    a handful of levels; a structured report's content tree perhaps 20."""
    max_fragments: int
    """Items of encapsulated pixel data (250 000): counting costs about 5 us each, twice in
    ``describe --previews`` (a million cost 10 s there). A 1 GiB upload holds 250 000
    fragments of 4 KiB: a whole-slide level of a quarter of a million tiles. Sparse
    background tiles can be smaller; a slide with more is refused unless this is raised."""
    max_frames: int
    """NumberOfFrames (250 000), as many as fragments: an encapsulated frame needs at least
    one; a native file at the upload cap with more would have frames under 4 KiB."""
    max_frame_bytes: int
    """Rows x Columns x SamplesPerPixel x bytes per sample of one decoded frame (1 GiB): ten
    times a 50-megapixel 16-bit mammogram, and more than a native frame can be at the 1 GiB
    upload cap. Whole-slide images are tiled into small frames. Validation decodes nothing;
    a frame beyond this is a declaration no reader could act on."""
    max_estimated_bytes: int
    """What reading and describing the data set is estimated to cost, as :func:`estimated_bytes`
    counts it (256 MiB, a quarter of the descriptor's 1,024 MB). Each cap above bounds one
    thing alone, and a file at one cap alone is within this (at the loaded-size cap,
    barely); a file just under four of them at once (issue 31, estimated at 890 MB) cost
    298 MB and 7.3 s of CPU, and five of them in one storing chunk 1.9 GB. A 3,000-frame
    enhanced multi-frame (about 50 000 elements, 25 000 items, 100 000 values) is
    estimated at about 250 MB."""
    max_preview_frame_bytes: int
    """The decoded frame a preview may decode (100 MiB): a 50-megapixel 16-bit mammogram is
    100 MB. Decoders hold about two frames at once (a 98 MiB RLE frame peaked at 196 MB),
    which keeps a preview within 256 MB; a larger frame, as Rows and Columns or as the
    codestream's own header declare it, gets no preview and a ``preview.too-large``
    warning."""

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Limits:
        """The limits of a config document's ``limits`` object; ValueError names a bad key."""
        _check_positive_integers(document, {f.name for f in fields(cls)})
        return cls(**document)


@dataclass(frozen=True)
class ConformanceSettings:
    """The ``conformance`` section of the configuration."""

    enabled: bool
    timeout_seconds: int
    max_memory_bytes: int
    """Address space the engine may map (RLIMIT_AS): past it, it stops and says nothing more."""
    max_file_bytes: int
    max_output_bytes: int
    max_findings: int
    """Findings kept per file; a crafted file cannot make a record grow without bound."""

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ConformanceSettings:
        """The settings of a config document's ``conformance`` object; ValueError names a bad
        key."""
        if not isinstance(document.get("enabled"), bool):
            raise ValueError("enabled must be true or false")
        numbers = {key: value for key, value in document.items() if key != "enabled"}
        _check_positive_integers(numbers, {f.name for f in fields(cls)} - {"enabled"})
        return cls(**document)


def _check_positive_integers(document: dict[str, Any], names: set[str]) -> None:
    """``document`` has exactly the keys ``names``, each a positive integer."""
    unknown = sorted(set(document) - names)
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(unknown)}")
    missing = sorted(names - set(document))
    if missing:
        raise ValueError(f"missing key(s): {', '.join(missing)}")
    bad = sorted(name for name, value in document.items()
                 if isinstance(value, bool) or not isinstance(value, int) or value <= 0)
    if bad:
        raise ValueError(f"not a positive integer: {', '.join(bad)}")
