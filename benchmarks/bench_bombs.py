"""Memory and CPU of hostile files: every one must get a verdict within bounds.

Each family below is built in a temporary folder, from a real file of pydicom's corpus
where one fits (CT_small, MR_small_RLE, JPEG2000, MR_small_jpeg_ls_lossless,
SC_rgb_jpeg_dcmtk), then run through ``pacs-validator validate --json`` and
``pacs-validator describe --json --previews DIR``, each in a fresh process started by a
wrapper process that reads ``getrusage(RUSAGE_CHILDREN)`` when it ends: the peak resident
set (``ru_maxrss``) and the CPU time (user + system) of the command. Growth is that peak
minus the peak of the same command on CT_small, a small valid file. Goals: at most 256 MB
of growth and 5 s of CPU for each row.

Families beyond a limit show the refusal; the "at cap" families sit just under a limit,
where the most work is done before a verdict, and so are the honest worst case.

The wrapper caps the command's address space (``RLIMIT_AS``, 6 GiB) so that a regression
cannot take the shared machine down: a row that hits it shows a MemoryError or a kill.

Run: ``.venv/bin/python benchmarks/bench_bombs.py [--only SUBSTRING]`` (about 3 minutes;
needs about 2 GB free in /tmp). Results are also written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests-local"))
from crafted import claim_codestream_size

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLI = Path(sys.executable).with_name("pacs-validator")
GOAL_MB = 256
GOAL_CPU_S = 5.0
ADDRESS_SPACE_CAP = 6 * 1024**3
MIB = 1024 * 1024
PRIVATE_GROUP = 0x6001
"""An odd (private) group after every other group of the corpus files used, and before
Pixel Data: elements in it are parsed by pydicom, which stops at Pixel Data."""
MAX_US = 65535
"""The largest Rows or Columns a US value can hold."""

WRAPPER = f"""
import json, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_CAP}, {ADDRESS_SPACE_CAP}))
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({{"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}}))
"""

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


def element_bomb(path: Path, elements: int) -> None:
    """CT_small with ``elements`` private UL elements, in odd groups from 6001 up."""
    def tail() -> Iterator[bytes]:
        for index in range(elements):
            group = PRIVATE_GROUP + 2 * (index // 0xE000)
            yield element((group << 16) | (0x1000 + index % 0xE000), b"UL", b"\0\0\0\0")
    write(path, corpus("CT_small.dcm"), tail())


def value_bomb(path: Path, count: int, value: bytes, vr: bytes = b"OB") -> None:
    """CT_small with ``count`` private ``vr`` elements holding ``value`` (a 64 KiB value is
    at pydicom's defer_size: loaded, not deferred)."""
    write(path, corpus("CT_small.dcm"), [
        creator(), *(element((PRIVATE_GROUP << 16) | (0x1000 + index), vr, value)
                     for index in range(count))])


DS_ZEROS = b"0\\" * 32766 + b"0 "
"""The longest explicit VR DS value (65 534 bytes) of the most values: 32 767 zeros."""


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
)

# --------------------------------------------------------------------------------------------
# Measuring


def measure(command: list[str]) -> dict[str, Any]:
    """The command's exit code, output, peak RSS and CPU, run under the wrapper."""
    done = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True,
                          text=True, timeout=600, check=True)
    report: dict[str, Any] = json.loads(done.stdout)
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


def run_family(family: Family, folder: Path) -> list[dict[str, Any]]:
    path = folder / "bomb.dcm"
    family.build(path)
    size = path.stat().st_size
    rows = []
    for command in ("validate", "describe --previews"):
        previews = folder / "previews"
        shutil.rmtree(previews, ignore_errors=True)
        argv = ([str(CLI), "validate", "--json", str(path)] if command == "validate" else
                [str(CLI), "describe", "--json", "--previews", str(previews), str(path)])
        report = measure(argv)
        status, rule = (validate_outcome(report) if command == "validate"
                        else describe_outcome(report, previews))
        rows.append({"family": family.name, "file_bytes": size, "command": command,
                     "exit": report["rc"], "status": status, "rule": rule,
                     "maxrss_kb": report["maxrss_kb"], "cpu_s": report["cpu_s"]})
    path.unlink()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run only the families whose name contains this")
    args = parser.parse_args()
    families = [f for f in FAMILIES if not args.only or args.only in f.name]
    with tempfile.TemporaryDirectory(prefix="bench-bombs-") as tmp:
        folder = Path(tmp)
        base = {row["command"]: row["maxrss_kb"]
                for row in run_family(Family("baseline: CT_small", baseline), folder)}
        rows = []
        for family in families:
            for row in run_family(family, folder):
                row["growth_mb"] = (row["maxrss_kb"] - base[row["command"]]) / 1024
                row["within_goals"] = row["growth_mb"] <= GOAL_MB and row["cpu_s"] <= GOAL_CPU_S
                rows.append(row)
                print_row(row)
    print(f"\nbaseline peak RSS (CT_small): validate {base['validate'] / 1024:.0f} MB, "
          f"describe --previews {base['describe --previews'] / 1024:.0f} MB")
    failing = [r for r in rows if not r["within_goals"]]
    print(f"{len(rows) - len(failing)} of {len(rows)} rows within {GOAL_MB} MB and {GOAL_CPU_S} s")
    write_results(rows, base)
    return 1 if failing else 0


HEADER = "| family | file | command | exit | status | rule | growth MB | CPU s |"


def print_row(row: dict[str, Any]) -> None:
    if not getattr(print_row, "started", False):
        print(HEADER)
        print("|---|---:|---|---:|---|---|---:|---:|")
        print_row.started = True  # type: ignore[attr-defined]
    size = row["file_bytes"]
    shown = f"{size / MIB:.1f} MB" if size >= MIB else f"{size / 1024:.0f} KB"
    mark = "" if row["within_goals"] else " **over**"
    print(f"| {row['family']} | {shown} | {row['command']} | {row['exit']} | {row['status']} "
          f"| {row['rule']} | {row['growth_mb']:.0f}{mark} | {row['cpu_s']:.2f} |", flush=True)


def write_results(rows: list[dict[str, Any]], base: dict[str, int]) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc)
    out = RESULTS_DIR / f"bombs-{stamp:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"when": stamp.isoformat(), "machine": platform.platform(),
                               "python": platform.python_version(),
                               "pydicom": pydicom.__version__, "baseline_kb": base,
                               "rows": rows}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    sys.exit(main())
