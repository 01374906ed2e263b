"""Memory and CPU of hostile files: every one must get a verdict within bounds.

Each family below is built in a temporary folder, from a real file of pydicom's corpus
where one fits (CT_small, MR_small_RLE, JPEG2000, MR_small_jpeg_ls_lossless,
SC_rgb_jpeg_dcmtk), then run through ``pacs-validator validate --json`` and
``pacs-validator describe --json --previews DIR``, each in a fresh process that reports its
own peak resident set (``ru_maxrss``) and CPU time (user + system) when it ends; the CPU of
the dciodvfy it starts is reported beside (conformance bounds it by its own timeout).
Growth is that peak minus the peak of the same command on CT_small, a small valid file.
Goals: at most 256 MB of growth and 5 s of CPU for each row.

Families beyond a limit show the refusal; the "at cap" families sit just under a limit,
where the most work is done before a verdict, and the "estimate at limit" ones just under
the estimated cost of several counts together (``limits.max_estimated_bytes``): the honest
worst cases.

The "chunk" rows store, as the descriptor does (``Storage.process_chunk`` over a local
folder), the first chunk the judge makes of copies of one file: goal, a peak within 60 % of
the descriptor's MemorySize. ``--weights N`` measures instead what each thing the
structural scan counts costs in each command (the median of N rounds).

The wrapper caps the command's address space (``RLIMIT_AS``, 6 GiB) so that a regression
cannot take the shared machine down: a row that hits it shows a MemoryError or a kill.

Run: ``.venv/bin/python benchmarks/bench_bombs.py [--only SUBSTRING] [--weights N]`` (about
10 minutes; needs about 2 GB free in /tmp). Results are also written as JSON to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests-local"))
from crafted import claim_codestream_size

from pacs_validator.contract.keys import work_key
from pacs_validator.contract.records import StudyCounts, StudyRecord
from pacs_validator.contract.states import State
from pacs_validator.dicom.config import build_config
from pacs_validator.dicom.data import data_document
from pacs_validator.dicom.limits import estimated_bytes
from pacs_validator.dicom.rules import Severity
from pacs_validator.dicom.validation import validate_instance
from pacs_validator.flow.judging import CHUNK_ESTIMATED_BYTES, chunk_file, chunks_of
from pacs_validator.flow.ports import Downloaded, SourceObject
from pacs_validator.flow.receiving import storing_fields
from pacs_validator.flow.services import Services
from pacs_validator.flow.storing import DESCRIPTOR_MEMORY_BYTES, Storage

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLI = Path(sys.executable).with_name("pacs-validator")
GOAL_MB = 256
GOAL_CPU_S = 5.0
CHUNK_GOAL = 0.6
"""A chunk of the worst valid files the judge groups peaks within this share of the
descriptor's MemorySize."""
ADDRESS_SPACE_CAP = 6 * 1024**3
MIB = 1024 * 1024
PRIVATE_GROUP = 0x6001
"""An odd (private) group after every other group of the corpus files used, and before
Pixel Data: elements in it are parsed by pydicom, which stops at Pixel Data."""
MAX_US = 65535
"""The largest Rows or Columns a US value can hold."""

WRAPPER = f"""
import json, os, resource, subprocess, sys, tempfile
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_CAP}, {ADDRESS_SPACE_CAP}))
with tempfile.NamedTemporaryFile("r", suffix=".json") as own:
    done = subprocess.run([sys.executable, "-c", *sys.argv[1:]], capture_output=True, text=True,
                          env={{**os.environ, "BENCH_USAGE": own.name}})
    text = own.read()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({{"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "own": json.loads(text) if text else None}}))
"""
OWN_USAGE = """
import atexit, json, os, resource, runpy, sys
def report():
    own = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["BENCH_USAGE"], "w") as out:
        json.dump({"maxrss_kb": own.ru_maxrss, "cpu_s": own.ru_utime + own.ru_stime}, out)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
"""Runs a Python script (the command line's, or this one's chunk harness) and writes its own
peak resident set and CPU when it ends. The wrapper's ``RUSAGE_CHILDREN`` mixes in dciodvfy,
which conformance starts: it adds dciodvfy's CPU, and its peak is that of the larger
process, a child started from the validator counting the validator's pages."""

# --------------------------------------------------------------------------------------------
# Building blocks: a real file's data set, raw elements appended after it, deflate streams


def corpus(name: str) -> Dataset:
    """A corpus file's data set, without its Data Set Trailing Padding (FFFC,FFFC), so that
    elements appended to it come in ascending tag order."""
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    dataset = pydicom.dcmread(path)
    dataset.pop(0xFFFCFFFC, None)
    return dataset


def element(tag: int, vr: bytes, value: bytes = b"", length: int | None = None) -> bytes:
    """An explicit VR little endian element; ``length`` overrides the value's own."""
    length = len(value) if length is None else length
    group, number = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHL", group, number, vr, 0, length) + value
    return struct.pack("<HH2sH", group, number, vr, length) + value


def item(payload: bytes = b"", undefined: bool = False) -> bytes:
    length = 0xFFFFFFFF if undefined else len(payload)
    return struct.pack("<HHL", 0xFFFE, 0xE000, length) + payload


ITEM_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
SEQUENCE_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def part10(dataset: Dataset, syntax: str) -> tuple[bytes, bytes]:
    """``dataset`` as Part 10 in ``syntax``: the preamble and file meta, and the data set
    encoded as explicit VR little endian (deflated files deflate exactly that)."""
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    plain = pydicom.filebase.DicomBytesIO()
    dataset.save_as(plain, enforce_file_format=True)
    whole = plain.getvalue()
    meta_end = 144 + struct.unpack("<L", whole[140:144])[0]
    dataset.file_meta.TransferSyntaxUID = syntax
    relabelled = pydicom.filebase.DicomBytesIO()
    dataset.save_as(relabelled, enforce_file_format=True)
    head = relabelled.getvalue()
    return head[:144 + struct.unpack("<L", head[140:144])[0]], whole[meta_end:]


def write(path: Path, dataset: Dataset, extra: Iterable[bytes] = (),
          syntax: str | None = None) -> None:
    """``dataset`` with the raw ``extra`` elements before its pixel data (if any); deflated
    when ``syntax`` says so."""
    syntax = syntax or str(dataset.file_meta.TransferSyntaxUID)
    pixels = pixel_element(dataset) if "PixelData" in dataset else b""
    dataset.pop("PixelData", None)
    meta, body = part10(dataset, syntax)
    pieces: Iterable[bytes] = [body, *extra, pixels]
    if syntax == DeflatedExplicitVRLittleEndian:
        pieces = deflate(pieces)
    with path.open("wb") as out:
        out.write(meta)
        for piece in pieces:
            out.write(piece)


def pixel_element(dataset: Dataset) -> bytes:
    """The PixelData element as written: undefined length when encapsulated."""
    if dataset.file_meta.TransferSyntaxUID.is_encapsulated:
        return element(0x7FE00010, b"OB", dataset.PixelData + SEQUENCE_DELIMITER,
                       length=0xFFFFFFFF)
    return element(0x7FE00010, dataset["PixelData"].VR.encode(), dataset.PixelData)


def deflate(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """A raw deflate stream of ``pieces``; a piece repeated by identity is compressed once.

    Each piece ends in a full flush, which leaves no reference back into it: the compressed
    bytes of a megabyte of zeros can be repeated to make gigabytes in milliseconds.
    """
    compressed: dict[int, bytes] = {}
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    for piece in pieces:
        if id(piece) not in compressed:
            compressed[id(piece)] = compressor.compress(piece) + compressor.flush(
                zlib.Z_FULL_FLUSH)
        yield compressed[id(piece)]
    yield compressor.flush(zlib.Z_FINISH)


def zeros(total: int) -> Iterator[bytes]:
    """``total`` zero bytes as MiB pieces (one object, so :func:`deflate` reuses it)."""
    block = bytes(MIB)
    for _ in range(total // MIB):
        yield block
    yield bytes(total % MIB)


def private_value(length: int) -> bytes:
    """A private OB element of ``length`` bytes' header (its value follows)."""
    return element((PRIVATE_GROUP << 16) | 0x1010, b"OB", length=length)


def creator() -> bytes:
    return element((PRIVATE_GROUP << 16) | 0x0010, b"LO", b"BOMB")


# --------------------------------------------------------------------------------------------
# The families


def deflate_bomb(path: Path, inflated: int) -> None:
    """CT_small deflated, with a private OB of ``inflated`` zero bytes."""
    write(path, corpus("CT_small.dcm"), [creator(), private_value(inflated), *zeros(inflated)],
          syntax=DeflatedExplicitVRLittleEndian)


def item_bomb(path: Path, items: int, syntax: str = ExplicitVRLittleEndian) -> None:
    """CT_small with a private sequence of ``items`` empty items."""
    sequence = element((PRIVATE_GROUP << 16) | 0x1010, b"SQ", length=0xFFFFFFFF)
    write(path, corpus("CT_small.dcm"), [creator(), sequence, item() * items,
                                         SEQUENCE_DELIMITER], syntax=syntax)


def uls(count: int, value: bytes, first_group: int = PRIVATE_GROUP) -> Iterator[bytes]:
    """``count`` private UL elements holding ``value``, in odd groups from ``first_group``."""
    for index in range(count):
        group = first_group + 2 * (index // 0xE000)
        yield element((group << 16) | (0x1000 + index % 0xE000), b"UL", value)


def element_bomb(path: Path, elements: int) -> None:
    """CT_small with ``elements`` private UL elements, in odd groups from 6001 up."""
    write(path, corpus("CT_small.dcm"), uls(elements, b"\0\0\0\0"))


def value_bomb(path: Path, count: int, value: bytes, vr: bytes = b"OB") -> None:
    """CT_small with ``count`` private ``vr`` elements holding ``value`` (a 64 KiB value is
    at pydicom's defer_size: loaded, not deferred)."""
    write(path, corpus("CT_small.dcm"), [
        creator(), *(element((PRIVATE_GROUP << 16) | (0x1000 + index), vr, value)
                     for index in range(count))])


DS_ZEROS = b"0\\" * 32766 + b"0 "
"""The longest explicit VR DS value (65 534 bytes) of the most values: 32 767 zeros."""
DS_VALUES = DS_ZEROS.count(b"\\") + 1


LT_TEXT = b"A" * 65534
"""The longest explicit VR LT value: one string, kept whole in the DICOM JSON."""


@dataclass(frozen=True)
class Mix:
    """What a file adds to CT_small to sit near several caps at once."""

    items: int = 0
    """Items of a private sequence, each holding one empty UL (an element, no value)."""
    empty_elements: int = 0
    """Top-level empty UL elements, in the odd groups after 6001."""
    ds_elements: int = 0
    """DS elements of :data:`DS_ZEROS` (32 767 values, 64 KiB loaded each)."""
    ob_values: int = 0
    """OB values of 64 KiB: at pydicom's defer_size, so loaded."""
    lt_values: int = 0
    """LT values of :data:`LT_TEXT` (loaded, as the OB values)."""

    def scaled(self, factor: float) -> Mix:
        return Mix(*(math.floor(count * factor) for count in astuple(self)))

    def estimate(self) -> int:
        """What the scan estimates of this file: CT_small's, and what the mix adds (its
        private creator, the sequence, the values, the items and the UL each holds)."""
        binary = self.ds_elements + self.ob_values + self.lt_values
        return ct_small_estimate() + estimated_bytes(
            elements=2 + binary + self.items + self.empty_elements, items=self.items,
            values=1 + self.ds_elements * DS_VALUES + self.ob_values + self.lt_values,
            loaded_bytes=4 + len(DS_ZEROS) * self.ds_elements + 65536 * self.ob_values
            + len(LT_TEXT) * self.lt_values)

    def at_estimate(self, target: int) -> Mix:
        """This mix scaled to the largest one whose estimate is at most ``target``."""
        low, high = 0.0, 1.0
        while self.scaled(high).estimate() <= target:
            high *= 2
        for _ in range(40):
            middle = (low + high) / 2
            low, high = (middle, high) if self.scaled(middle).estimate() <= target else (
                low, middle)
        return self.scaled(low)


@cache
def ct_small_estimate() -> int:
    """The estimate of CT_small as :func:`write` writes it, without its trailing padding."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ct.dcm"
        write(path, corpus("CT_small.dcm"))
        return validate_instance(path, build_config())[1].estimated_bytes


CT_SMALL_ELEMENTS = 261
"""CT_small's data elements once :func:`corpus` has dropped its trailing padding."""
ALL_CAPS = Mix(items=49_000, empty_elements=98_000 - CT_SMALL_ELEMENTS - 2 - 15 - 1_000 - 49_000,
               ds_elements=15, ob_values=1_000)
"""98,000 elements, 49,002 items, 492,800 values and 66.5 MB loaded: each just under its
cap (100,000, 50,000, 500,000, 64 MiB), the file of issue 31."""
SHAPES = {
    "items and elements": Mix(items=1, empty_elements=1),
    "the four of issue 31": ALL_CAPS,
    "values and loaded text": Mix(ds_elements=15, lt_values=1_000),
}
"""The worst valid files: one costly in CPU (a chunk describes it cheaply), one of
everything, one costly in memory where a chunk keeps its DICOM JSON."""


LIMITS = build_config().limits


def at_estimate(mix: Mix, target: int) -> Callable[[Path], None]:
    return lambda path: mixed(path, mix.at_estimate(target))


def mixed(path: Path, mix: Mix) -> None:
    """CT_small with ``mix`` in its private groups, in ascending tag order."""
    in_item = item(element((PRIVATE_GROUP << 16) | 0x1000, b"UL"))
    sequence = element((PRIVATE_GROUP << 16) | 0x2000, b"SQ", length=0xFFFFFFFF)
    write(path, corpus("CT_small.dcm"), [
        creator(),
        *(element((PRIVATE_GROUP << 16) | (0x1000 + index), b"DS", DS_ZEROS)
          for index in range(mix.ds_elements)),
        *(element((PRIVATE_GROUP << 16) | (0x1100 + index), b"OB", bytes(65536))
          for index in range(mix.ob_values)),
        *(element((PRIVATE_GROUP << 16) | (0x1500 + index), b"LT", LT_TEXT)
          for index in range(mix.lt_values)),
        sequence, in_item * mix.items, SEQUENCE_DELIMITER,
        *uls(mix.empty_elements, b"", first_group=PRIVATE_GROUP + 2)])


def nested_value_bomb(path: Path, length: int) -> None:
    """CT_small with one private sequence item holding an OB of ``length`` zero bytes:
    pydicom defers no value inside a sequence."""
    value = element((PRIVATE_GROUP << 16) | 0x1000, b"OB", length=length)
    sequence = element((PRIVATE_GROUP << 16) | 0x1010, b"SQ", length=0xFFFFFFFF)
    write(path, corpus("CT_small.dcm"), [
        creator(), sequence, item(undefined=True), value, *zeros(length), ITEM_DELIMITER,
        SEQUENCE_DELIMITER])


def nesting_bomb(path: Path, levels: int) -> None:
    """CT_small with ``levels`` private sequences, each in an item of the one before."""
    opening = element((PRIVATE_GROUP << 16) | 0x1010, b"SQ", length=0xFFFFFFFF) + item(
        undefined=True)
    closing = ITEM_DELIMITER + SEQUENCE_DELIMITER
    write(path, corpus("CT_small.dcm"), [creator(), opening * levels, closing * levels])


def declared_matrix(name: str, rows: int, columns: int) -> Callable[[Path], None]:
    """A real compressed file whose Rows and Columns say ``rows`` x ``columns``."""
    def build(path: Path) -> None:
        dataset = corpus(name)
        dataset.Rows, dataset.Columns = rows, columns
        write(path, dataset)
    return build


def codestream_claiming(name: str, side: int) -> Callable[[Path], None]:
    """A real compressed file whose frame's own codestream header (JPEG SOF, JPEG-LS
    SOF55, JPEG 2000 SIZ) declares ``side`` x ``side``; Rows and Columns are unchanged."""
    def build(path: Path) -> None:
        dataset = corpus(name)
        claim_codestream_size(dataset, side, side)
        write(path, dataset)
    return build


def rle_frame(path: Path, side: int) -> None:
    """MR_small_RLE (16-bit) as one ``side`` x ``side`` frame of zeros, RLE-encoded for
    real: two byte segments of runs of 128 zeros (``side`` must make whole runs)."""
    dataset = corpus("MR_small_RLE.dcm")
    dataset.Rows = dataset.Columns = side
    segment = b"\x81\x00" * (side * side // 128)
    header = struct.pack("<16L", 2, 64, 64 + len(segment), *([0] * 13))
    dataset.PixelData = encapsulate([header + segment + segment])
    write(path, dataset)


def huge_frame_count(path: Path) -> None:
    """The JPEG baseline file declaring the largest NumberOfFrames an IS value holds."""
    dataset = corpus("SC_rgb_jpeg_dcmtk.dcm")
    dataset.NumberOfFrames = 2**31 - 1
    write(path, dataset)


def fragment_bomb(path: Path, fragments: int) -> None:
    """The JPEG baseline file with its frame followed by ``fragments`` empty fragments."""
    dataset = corpus("SC_rgb_jpeg_dcmtk.dcm")
    codestream = next(generate_frames(dataset.PixelData, number_of_frames=1))
    del dataset.PixelData
    pixel = element(0x7FE00010, b"OB", length=0xFFFFFFFF)
    write(path, dataset, [pixel, item(), item(codestream), item() * fragments,
                          SEQUENCE_DELIMITER])  # the pixel data is the last of the extras


def huge_un(path: Path) -> None:
    """CT_small with a private UN element whose length says 0xFFFFFFFE (4 GB)."""
    write(path, corpus("CT_small.dcm"), [creator(), element((PRIVATE_GROUP << 16) | 0x1010, b"UN",
                                                            b"\0" * 64, length=0xFFFFFFFE)])


def baseline(path: Path) -> None:
    shutil.copyfile(str(get_testdata_file("CT_small.dcm")), path)


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[Path], None]


FAMILIES = (
    Family("deflate bomb: 2 GiB of zeros", lambda p: deflate_bomb(p, 2048 * MIB)),
    Family("deflate at cap: 511 MiB", lambda p: deflate_bomb(p, 511 * MIB)),
    Family("item bomb: 600,000 (plain)", lambda p: item_bomb(p, 600_000)),
    Family("item bomb: 600,000 (deflated)",
           lambda p: item_bomb(p, 600_000, DeflatedExplicitVRLittleEndian)),
    Family("items at cap: 49,990", lambda p: item_bomb(p, 49_990)),
    Family("element bomb: 2,000,000", lambda p: element_bomb(p, 2_000_000)),
    Family("elements at cap: 99,000", lambda p: element_bomb(p, 99_000)),
    Family("value bomb: 1,500 x 64 KiB OB", lambda p: value_bomb(p, 1500, bytes(65536))),
    Family("values at cap: 1,000 x 64 KiB OB", lambda p: value_bomb(p, 1000, bytes(65536))),
    Family("DS value bomb: 1,000 x 32,767 values", lambda p: value_bomb(p, 1000, DS_ZEROS, b"DS")),
    Family("DS values at cap: 15 x 32,767 values", lambda p: value_bomb(p, 15, DS_ZEROS, b"DS")),
    Family("nested value bomb: 512 MiB OB in an item",
           lambda p: nested_value_bomb(p, 512 * MIB)),
    Family("nesting: 100,000 levels", lambda p: nesting_bomb(p, 100_000)),
    Family("nesting at cap: 64 levels", lambda p: nesting_bomb(p, 64)),
    Family("matrix: RLE 65535 x 65535", declared_matrix("MR_small_RLE.dcm", MAX_US, MAX_US)),
    Family("matrix: JPEG 2000 65535 x 65535",
           declared_matrix("JPEG2000.dcm", MAX_US, MAX_US)),
    Family("matrix: JPEG-LS 65535 x 65535",
           declared_matrix("MR_small_jpeg_ls_lossless.dcm", MAX_US, MAX_US)),
    Family("matrix: JPEG baseline 65535 x 65535",
           declared_matrix("SC_rgb_jpeg_dcmtk.dcm", MAX_US, MAX_US)),
    Family("codestream: JPEG baseline SOF 30000 x 30000",
           codestream_claiming("SC_rgb_jpeg_dcmtk.dcm", 30000)),
    Family("codestream: JPEG-LS SOF55 30000 x 30000",
           codestream_claiming("MR_small_jpeg_ls_lossless.dcm", 30000)),
    Family("codestream: JPEG 2000 SIZ 30000 x 30000",
           codestream_claiming("JPEG2000.dcm", 30000)),
    Family("RLE 7168 x 7168 x 16 bit (98 MiB frame)", lambda p: rle_frame(p, 7168)),
    Family("RLE 8000 x 8000 x 16 bit (122 MiB frame)", lambda p: rle_frame(p, 8000)),
    Family("NumberOfFrames 2^31 - 1", huge_frame_count),
    Family("fragment bomb: 2,000,000", lambda p: fragment_bomb(p, 2_000_000)),
    Family("fragments at cap: 249,990", lambda p: fragment_bomb(p, 249_990)),
    Family("UN of length 0xFFFFFFFE", huge_un),
    Family("all caps at once: 49,000 items, 98,000 elements, 492,800 values, 66.5 MB loaded",
           lambda p: mixed(p, ALL_CAPS)),
    *(Family(f"estimate at limit: {shape}", at_estimate(mix, LIMITS.max_estimated_bytes))
      for shape, mix in SHAPES.items()),
)

# --------------------------------------------------------------------------------------------
# Measuring


def measure(script: Path, *arguments: str) -> dict[str, Any]:
    """The Python script's exit code, output, peak RSS and CPU, run under the wrapper: its own
    peak and CPU (``maxrss_kb``, ``cpu_s``) and its children's CPU (dciodvfy's,
    ``engine_cpu_s``). A script killed before it could report its own figures is given the
    wrapper's."""
    done = subprocess.run([sys.executable, "-c", WRAPPER, OWN_USAGE, str(script), *arguments],
                          capture_output=True, text=True, timeout=600, check=True)
    report: dict[str, Any] = json.loads(done.stdout)
    total_cpu_s = report["cpu_s"]
    own = report.pop("own") or {"maxrss_kb": report["maxrss_kb"], "cpu_s": total_cpu_s}
    report.update(maxrss_kb=own["maxrss_kb"], cpu_s=own["cpu_s"],
                  engine_cpu_s=total_cpu_s - own["cpu_s"])
    return report


def validate_outcome(report: dict[str, Any]) -> tuple[str, str]:
    """The file's status and its first error rule (else first warning) from the JSON."""
    try:
        [file] = json.loads(report["stdout"])["files"]
    except (ValueError, KeyError):
        return "crash", report["stderr"].strip().splitlines()[-1:][0] if report["stderr"] else ""
    findings = file["findings"]
    errors = [f["rule"] for f in findings if f["severity"] == "error"]
    rules = errors or [f["rule"] for f in findings]
    return str(file["status"]), rules[0] if rules else "-"


def describe_outcome(report: dict[str, Any], previews: Path) -> tuple[str, str]:
    """Whether a preview was written, and the rule of the stderr line that says why not."""
    lines = report["stderr"].splitlines()
    skipped = [line for line in lines if line.startswith("skipped")]
    if skipped:  # "skipped (unreadable, status 413): PATH"
        return f"skipped, {skipped[0].split('status ')[1].split(')')[0]}", "-"
    rules = [word for line in lines for word in line.split() if word.startswith("preview.")]
    if report["rc"] not in (0, 1):
        return "crash", (lines[-1] if lines else "")[:40]
    written = any(previews.iterdir()) if previews.exists() else False
    return ("preview written" if written else "no preview"), rules[0] if rules else "-"


USAGE_KEYS = ("maxrss_kb", "cpu_s", "engine_cpu_s")


def file_rows(path: Path, folder: Path) -> list[dict[str, Any]]:
    """The file through ``validate`` and ``describe --previews``: one row each."""
    rows = []
    for command in ("validate", "describe --previews"):
        previews = folder / "previews"
        shutil.rmtree(previews, ignore_errors=True)
        arguments = (["validate", "--json", str(path)] if command == "validate" else
                     ["describe", "--json", "--previews", str(previews), str(path)])
        report = measure(CLI, *arguments)
        status, rule = (validate_outcome(report) if command == "validate"
                        else describe_outcome(report, previews))
        rows.append({"file_bytes": path.stat().st_size, "command": command,
                     "exit": report["rc"], "status": status, "rule": rule,
                     **{key: report[key] for key in USAGE_KEYS}})
    return rows


def run_family(family: Family, folder: Path) -> list[dict[str, Any]]:
    path = folder / "bomb.dcm"
    family.build(path)
    rows = [{"family": family.name, **row} for row in file_rows(path, folder)]
    path.unlink()
    return rows


# --------------------------------------------------------------------------------------------
# A storing chunk: the descriptor's work on the files the judge groups


CHUNK_COMMAND = "describe chunk"
STUDY_ID = "0" * 32
CANDIDATES = 20
"""Copies of a file offered to the judge's chunking; the first chunk is the one measured."""


class FolderStore:
    """The object store port over a local folder, for what one storing chunk calls: a
    download is the object's first bytes copied to a temporary file (S3Bucket.downloaded),
    a copy is server-side (nothing passes through the function), a JSON document is encoded
    whole before it is written (S3Bucket.put_json)."""

    bucket = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def downloaded(self, key: str, version_id: str | None = None,
                   first_bytes: int | None = None) -> Iterator[Downloaded]:
        with tempfile.NamedTemporaryFile(suffix=".dcm") as handle, \
                (self.root / key).open("rb") as source:
            remaining = first_bytes if first_bytes is not None else -1
            while remaining and (piece := source.read(8 * MIB if remaining < 0
                                                      else min(remaining, 8 * MIB))):
                handle.write(piece)
                remaining -= len(piece) if remaining > 0 else 0
            handle.flush()
            yield Downloaded(Path(handle.name), None)

    def copy_from(self, source_bucket: str, source: SourceObject, target_key: str) -> None:
        pass

    def get_json(self, key: str) -> Any:
        return json.loads((self.root / key).read_bytes())

    def put_json(self, key: str, document: Any, indent: int | None = 2) -> None:
        self.put_bytes(key, json.dumps(document, indent=indent, ensure_ascii=False).encode(),
                       "application/json")

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class OneChunkOfTwo:
    """The status table of a VALID study of two chunks, of which this is the first done:
    its part is written, and the study is left for the other chunk to finish."""

    def __init__(self, files: int) -> None:
        self.record = StudyRecord(STUDY_ID, State.VALID, expected=files, chunks=2,
                                  counts=StudyCounts(instances=files))

    def study(self, study_id: str) -> StudyRecord:
        return self.record

    def chunk_done(self, study_id: str, index: int) -> int:
        return 1


def describe_chunk(folder: Path) -> None:
    """Store chunk 0 of the study in ``folder`` as the descriptor does (the harness's entry
    point, run in a fresh process): print how many instances its part describes."""
    files = json.loads((folder / work_key(STUDY_ID, "chunks", "0.json")).read_bytes())
    store = FolderStore(folder)
    defaults = data_document("pipeline.json")
    services = Services(validator_overrides={}, table=OneChunkOfTwo(len(files)),  # type: ignore[arg-type]
                        uploads=store, store=store, publisher=None,  # type: ignore[arg-type]
                        dispatcher=None,  # type: ignore[arg-type]
                        upload_deadline_seconds=defaults["upload_deadline_seconds"],
                        chunk_instances=defaults["chunk_instances"])
    Storage(services).process_chunk(STUDY_ID, 0)
    part = json.loads((folder / work_key(STUDY_ID, "parts", "0.json")).read_bytes())
    print(json.dumps({"described": len(part["dicom_json"])}))


def chunk_row(path: Path, folder: Path, copies: int = CANDIDATES) -> dict[str, Any]:
    """The file validated as the receiver does; when it is valid, the first chunk the judge
    makes of ``copies`` copies of it, stored by :func:`describe_chunk` in a fresh process."""
    result, parsed = validate_instance(path, build_config())
    errors = [f.rule for f in result.findings if f.severity is Severity.ERROR]
    row: dict[str, Any] = {"file_bytes": path.stat().st_size, "command": CHUNK_COMMAND,
                           "exit": 0, "status": result.status,
                           "rule": errors[0] if errors else "-",
                           **dict.fromkeys(USAGE_KEYS, 0)}
    if not result.valid:
        return row
    chunk_folder = folder / "chunk"
    shutil.rmtree(chunk_folder, ignore_errors=True)
    listing = chunk_folder / work_key(STUDY_ID, "chunks", "0.json")
    listing.parent.mkdir(parents=True)
    shutil.copyfile(path, chunk_folder / "file.dcm")
    record = {**result.to_record(), "key": "file.dcm", **storing_fields(parsed)}
    chunk = chunks_of([chunk_file({**record, "name": f"{index}.dcm"}, preview=False)
                       for index in range(copies)], copies)[0]
    listing.write_text(json.dumps(chunk))
    report = measure(Path(__file__), "--describe-chunk", str(chunk_folder))
    shutil.rmtree(chunk_folder)
    described = json.loads(report["stdout"])["described"] if report["rc"] == 0 else 0
    row.update(command=f"{CHUNK_COMMAND} ({len(chunk)} files)", exit=report["rc"],
               status=f"{described} described" if described else "crash",
               **{key: report[key] for key in USAGE_KEYS})
    return row


def run_chunk(family: Family, folder: Path) -> dict[str, Any]:
    path = folder / "bomb.dcm"
    family.build(path)
    row = {"family": family.name, **chunk_row(path, folder)}
    path.unlink()
    return row


CHUNKS = (
    Family("chunk: all caps at once", lambda p: mixed(p, ALL_CAPS)),
    *(Family(f"chunk: {shape} at half the chunk budget",
             at_estimate(mix, CHUNK_ESTIMATED_BYTES // 2)) for shape, mix in SHAPES.items()),
)
"""Files offered to the judge by the :data:`CANDIDATES`: the chunk it makes is measured."""


# --------------------------------------------------------------------------------------------
# What each counted thing costs: the weights of the limits' estimate


@dataclass(frozen=True)
class Component:
    """Two files that differ by ``units`` of one thing the scan counts, and little else."""

    name: str
    smaller: Callable[[Path], None]
    larger: Callable[[Path], None]
    units: int




def empty_elements(path: Path, count: int) -> None:
    """CT_small with ``count`` private UL elements without a value."""
    write(path, corpus("CT_small.dcm"), uls(count, b""))


COMPONENTS = (
    Component("sequence item (empty)", lambda p: item_bomb(p, 8_000),
              lambda p: item_bomb(p, 40_000), 32_000),
    Component("data element (empty UL)", lambda p: empty_elements(p, 16_000),
              lambda p: empty_elements(p, 80_000), 64_000),
    Component("value (DS)", lambda p: value_bomb(p, 3, DS_ZEROS, b"DS"),
              lambda p: value_bomb(p, 13, DS_ZEROS, b"DS"), 10 * DS_VALUES),
    Component("value (IS)", lambda p: value_bomb(p, 3, DS_ZEROS, b"IS"),
              lambda p: value_bomb(p, 13, DS_ZEROS, b"IS"), 10 * DS_VALUES),
    Component("loaded byte (OB, 64 KiB values)", lambda p: value_bomb(p, 150, bytes(65536)),
              lambda p: value_bomb(p, 750, bytes(65536)), 600 * 65536),
    Component("loaded byte (LT, 64 KiB values)", lambda p: value_bomb(p, 150, LT_TEXT, b"LT"),
              lambda p: value_bomb(p, 750, LT_TEXT, b"LT"), 600 * len(LT_TEXT)),
)


def unit_costs(component: Component, folder: Path, repeat: int) -> list[dict[str, Any]]:
    """Peak memory and CPU per unit of ``component`` in each command: the difference
    between its two files over the units between them, the median of ``repeat`` rounds."""
    rounds: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeat):
        measured = []
        for build in (component.smaller, component.larger):
            path = folder / "component.dcm"
            build(path)
            rows = [*file_rows(path, folder), chunk_row(path, folder, copies=1)]
            path.unlink()
            if rows[0]["status"] != "200":
                raise RuntimeError(f"{component.name}: a file of it is refused ({rows[0]['rule']})")
            measured.append(rows)
        for small, large in zip(*measured, strict=True):
            rounds.setdefault(small["command"], []).append((
                (large["maxrss_kb"] - small["maxrss_kb"]) * 1024 / component.units,
                (large["cpu_s"] - small["cpu_s"]) * 1e6 / component.units))
    return [{"component": component.name, "command": command,
             "bytes": statistics.median(b for b, _ in figures),
             "us": statistics.median(us for _, us in figures)}
            for command, figures in rounds.items()]


def weights(repeat: int) -> None:
    print("| counted thing | command | peak bytes / unit | CPU us / unit |")
    print("|---|---|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-bombs-") as tmp:
        for component in COMPONENTS:
            for row in unit_costs(component, Path(tmp), repeat):
                rows.append(row)
                print(f"| {row['component']} | {row['command']} | {row['bytes']:.3g} "
                      f"| {row['us']:.3g} |", flush=True)
    write_results(rows, {}, "weights")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run only the families whose name contains this")
    parser.add_argument("--weights", type=int, metavar="ROUNDS",
                        help="measure what each thing the scan counts costs (the median of "
                             "ROUNDS rounds), and stop")
    parser.add_argument("--describe-chunk", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.describe_chunk:
        describe_chunk(args.describe_chunk)
        return 0
    if args.weights:
        weights(args.weights)
        return 0
    families = [f for f in FAMILIES if not args.only or args.only in f.name]
    chunks = [f for f in CHUNKS if not args.only or args.only in f.name]
    memory_mb = DESCRIPTOR_MEMORY_BYTES // MIB
    with tempfile.TemporaryDirectory(prefix="bench-bombs-") as tmp:
        folder = Path(tmp)
        base = {row["command"]: row["maxrss_kb"]
                for row in run_family(Family("baseline: CT_small", baseline), folder)}
        base[CHUNK_COMMAND] = run_chunk(Family("baseline: CT_small", baseline),
                                        folder)["maxrss_kb"]
        rows = []
        for family in families:
            for row in run_family(family, folder):
                row["growth_mb"] = (row["maxrss_kb"] - base[row["command"]]) / 1024
                row["within_goals"] = row["growth_mb"] <= GOAL_MB and row["cpu_s"] <= GOAL_CPU_S
                rows.append(row)
                print_row(row, memory_mb)
        for chunk in chunks:
            row = run_chunk(chunk, folder)
            row["growth_mb"] = (row["maxrss_kb"] - base[CHUNK_COMMAND]) / 1024 if \
                row["maxrss_kb"] else 0.0
            row["within_goals"] = row["maxrss_kb"] / 1024 <= CHUNK_GOAL * memory_mb
            rows.append(row)
            print_row(row, memory_mb)
    print(f"\nbaseline peak RSS (CT_small): validate {base['validate'] / 1024:.0f} MB, "
          f"describe --previews {base['describe --previews'] / 1024:.0f} MB, "
          f"{CHUNK_COMMAND} {base[CHUNK_COMMAND] / 1024:.0f} MB")
    failing = [r for r in rows if not r["within_goals"]]
    print(f"{len(rows) - len(failing)} of {len(rows)} rows within goals: {GOAL_MB} MB of growth "
          f"and {GOAL_CPU_S} s a file, a chunk's peak within {CHUNK_GOAL:.0%} of the "
          f"descriptor's {memory_mb} MB")
    write_results(rows, base)
    return 1 if failing else 0


HEADER = ("| family | file | command | exit | status | rule | growth MB | peak MB (% of "
          "MemorySize) | CPU s | dciodvfy CPU s |")


def print_row(row: dict[str, Any], memory_mb: int) -> None:
    if not getattr(print_row, "started", False):
        print(HEADER)
        print("|---|---:|---|---:|---|---|---:|---:|---:|---:|")
        print_row.started = True  # type: ignore[attr-defined]
    size = row["file_bytes"]
    shown = f"{size / MIB:.1f} MB" if size >= MIB else f"{size / 1024:.0f} KB"
    mark = "" if row["within_goals"] else " **over**"
    peak = row["maxrss_kb"] / 1024
    engine = "-" if row["command"].startswith(CHUNK_COMMAND) else f"{row['engine_cpu_s']:.2f}"
    print(f"| {row['family']} | {shown} | {row['command']} | {row['exit']} | {row['status']} "
          f"| {row['rule']} | {row['growth_mb']:.0f}{mark} | {peak:.0f} ({peak / memory_mb:.0%}) "
          f"| {row['cpu_s']:.2f} | {engine} |", flush=True)


def write_results(rows: list[dict[str, Any]], base: dict[str, int], kind: str = "bombs"
                  ) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc)
    out = RESULTS_DIR / f"{kind}-{stamp:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"when": stamp.isoformat(), "machine": platform.platform(),
                               "python": platform.python_version(),
                               "pydicom": pydicom.__version__, "baseline_kb": base,
                               "rows": rows}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    sys.exit(main())
