"""Memory and time of validating and describing one ~1 GB multi-frame file.

Two files are synthesised in a temporary folder under /tmp, streamed to disk in chunks (the
pixel data never exists in memory as a whole):

* ``native``        MR_small's attributes as a 512 x 512, 16-bit, N-frame MR image in
                    Explicit VR Little Endian, PixelData (OW) of exactly Rows x Columns x 2 x N
                    bytes (random bytes)
* ``encapsulated``  the same attributes as an 8-bit JPEG Baseline image whose PixelData holds a
                    filled basic offset table and many fragments: every frame is split into
                    ``--fragments-per-frame`` fragments of ``--fragment-kb`` KiB; the first
                    fragment of a frame starts with the JPEG SOI marker FFD8, the others do not

Each file is then validated and described (``validate_instance`` + ``build_metadata``) in a
fresh Python process, which reports its resident set size before and after from
``/proc/self/status`` (VmRSS; VmHWM, the peak, is reset through ``/proc/self/clear_refs``
just before the measured call) and ``ru_maxrss``, and the time taken. The goal is an RSS
growth of at most 128 MB. The files are deleted afterwards.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--size-mb 1024]``.
Results are also written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GOAL_MB = 128
ROWS = COLUMNS = 512
WRITE_CHUNK = 8 * 1024 * 1024
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

# --------------------------------------------------------------------------------------------
# Synthesis


def _template(bits: int, frames: int, syntax: str) -> Any:
    """MR_small's attributes, without pixel data, as an N-frame 512 x 512 image."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import UID, generate_uid

    template = get_testdata_file("MR_small.dcm")
    assert isinstance(template, str)
    dataset = pydicom.dcmread(template, stop_before_pixels=True)
    for keyword in ("PixelData", "SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in dataset:
            delattr(dataset, keyword)
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = UID(syntax)
    dataset.NumberOfFrames = frames
    dataset.Rows = ROWS
    dataset.Columns = COLUMNS
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = bits
    dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 0
    return dataset


def _write_header(dataset: Any, path: Path) -> None:
    dataset.save_as(path, enforce_file_format=True)


def _random_block(size: int) -> bytes:
    return os.urandom(size)


def write_native(path: Path, size_mb: int) -> dict[str, Any]:
    """A native 16-bit file of about ``size_mb`` MiB; the pixel data streamed in chunks."""
    frame_bytes = ROWS * COLUMNS * 2
    frames = max(1, size_mb * 1024 * 1024 // frame_bytes)
    _write_header(_template(16, frames, EXPLICIT_VR_LITTLE_ENDIAN), path)
    length = frame_bytes * frames
    block = _random_block(WRITE_CHUNK)
    with path.open("ab") as out:
        out.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, length))
        remaining = length
        while remaining:
            chunk = block[: min(remaining, len(block))]
            out.write(chunk)
            remaining -= len(chunk)
    return {"frames": frames, "pixel_bytes": length, "file_bytes": path.stat().st_size}


def write_encapsulated(
    path: Path, size_mb: int, fragment_bytes: int, fragments_per_frame: int
) -> dict[str, Any]:
    """An encapsulated (JPEG Baseline) file of about ``size_mb`` MiB with many fragments."""
    if fragment_bytes % 2:
        raise ValueError("fragment lengths are even")
    frame_items = fragments_per_frame * (8 + fragment_bytes)
    frames = max(1, size_mb * 1024 * 1024 // frame_items)
    _write_header(_template(8, frames, JPEG_BASELINE), path)
    block = bytearray(_random_block(fragment_bytes))
    first = bytes(b"\xff\xd8\xff\xe0" + block[4:])[:fragment_bytes]  # a frame starts with SOI
    block[0:2] = b"\x00\x00"[:fragment_bytes]  # continuations must not look like frame starts
    rest = bytes(block)
    item = struct.pack("<HHL", 0xFFFE, 0xE000, fragment_bytes)
    with path.open("ab") as out:
        out.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
        offsets = [index * frame_items for index in range(frames)]
        out.write(struct.pack("<HHL", 0xFFFE, 0xE000, 4 * frames))
        out.write(struct.pack(f"<{frames}L", *offsets))
        pending = bytearray()
        for _ in range(frames):
            for index in range(fragments_per_frame):
                pending += item
                pending += first if index == 0 else rest
                if len(pending) >= WRITE_CHUNK:
                    out.write(pending)
                    pending.clear()
        out.write(pending)
        out.write(struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    return {
        "frames": frames,
        "fragments": frames * fragments_per_frame,
        "fragment_bytes": fragment_bytes,
        "file_bytes": path.stat().st_size,
    }


# --------------------------------------------------------------------------------------------
# Measurement (runs in a fresh process: ``bench_memory.py --child FILE``)


def _status_kb() -> dict[str, int]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(path: Path) -> dict[str, Any]:
    """Validate and describe ``path``; the RSS and times around it, as a JSON-able dict."""
    from pydicom.data import get_testdata_file

    from pacs_validator.dicom.config import build_config
    from pacs_validator.dicom.description import DescribedInstance, build_metadata
    from pacs_validator.dicom.parsing import sha256_of
    from pacs_validator.dicom.validation import validate_instance

    config = build_config()

    def validate_and_describe(source: Path) -> tuple[Any, Any, float, float]:
        start = time.perf_counter()
        result, parsed = validate_instance(source, config, name=str(source))
        validated = time.perf_counter()
        instance = DescribedInstance.of(result, parsed, key=str(source))
        document = None
        if instance is not None:
            document = build_metadata(result.summary.study_instance_uid, [instance])
        described = time.perf_counter()
        return result, (parsed, document), validated - start, described - validated

    # Warm-up on a small file so that lazily loaded tables (rules, IOD table, metadata map)
    # and imports are not counted as growth caused by the big file.
    small = get_testdata_file("MR_small.dcm")
    assert isinstance(small, str)
    validate_and_describe(Path(small))
    before = _status_kb()
    peak_reset = _reset_peak()
    result, kept, validate_s, describe_s = validate_and_describe(path)
    after = _status_kb()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parsed, document = kept
    start = time.perf_counter()
    sha256_of(path)
    hash_s = time.perf_counter() - start
    start = time.perf_counter()
    with path.open("rb") as stream:
        while stream.read(1024 * 1024):
            pass
    read_s = time.perf_counter() - start
    pixel = parsed.pixel_data
    return {
        "status": result.status,
        "findings": [f"{f.rule} {f.tag or ''} {f.message}" for f in result.findings],
        "fragments_seen": pixel.fragments.count if pixel and pixel.fragments else None,
        "described": document is not None,
        "rss_before_kb": before["VmRSS"],
        "rss_after_kb": after["VmRSS"],
        "peak_kb": after["VmHWM"] if peak_reset else None,
        "peak_reset": peak_reset,
        "ru_maxrss_kb": maxrss_kb,
        "growth_peak_mb": ((after["VmHWM"] if peak_reset else maxrss_kb) - before["VmRSS"])
        / 1024,
        "growth_after_mb": (after["VmRSS"] - before["VmRSS"]) / 1024,
        "validate_s": validate_s,
        "describe_s": describe_s,
        "sha256_alone_s": hash_s,
        "plain_read_s": read_s,
    }


def measure(path: Path) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return what it reports."""
    env = dict(os.environ)
    core = Path(__file__).resolve().parent.parent / "layers" / "core"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(core), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


# --------------------------------------------------------------------------------------------


def _print(kind: str, info: dict[str, Any], report: dict[str, Any], write_s: float) -> None:
    size_mb = info["file_bytes"] / 1024 / 1024
    verdict = "met" if report["growth_peak_mb"] <= GOAL_MB else "NOT met"
    print(f"\n== {kind}: {size_mb:.0f} MiB, {info['frames']} frames"
          + (f", {info['fragments']} fragments" if "fragments" in info else "")
          + f" (written in {write_s:.1f} s) ==")
    print(f"  status {report['status']}, fragments seen {report['fragments_seen']}, "
          f"described: {report['described']}")
    for finding in report["findings"]:
        print(f"    finding: {finding}")
    print(f"  RSS before {report['rss_before_kb'] / 1024:8.1f} MB   after "
          f"{report['rss_after_kb'] / 1024:8.1f} MB   peak "
          f"{(report['peak_kb'] or report['ru_maxrss_kb']) / 1024:8.1f} MB   "
          f"(ru_maxrss {report['ru_maxrss_kb'] / 1024:.1f} MB)")
    print(f"  RSS growth: peak {report['growth_peak_mb']:.1f} MB, retained "
          f"{report['growth_after_mb']:.1f} MB  (goal <= {GOAL_MB} MB: {verdict})")
    print(f"  time: validate {report['validate_s']:.3f} s + describe "
          f"{report['describe_s'] * 1000:.2f} ms; for scale, sha256 of the file alone "
          f"{report['sha256_alone_s']:.3f} s, plain 1 MiB-chunk read {report['plain_read_s']:.3f} s"
          f"  ({size_mb / report['validate_s']:.0f} MiB/s validated)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--fragment-kb", type=int, default=64,
                        help="encapsulated fragment size in KiB (default 64)")
    parser.add_argument("--fragment-bytes", type=int,
                        help="encapsulated fragment size in bytes, even, 0 allowed (overrides "
                        "--fragment-kb; small values show the cost per fragment)")
    parser.add_argument("--fragments-per-frame", type=int, default=4,
                        help="fragments per encapsulated frame (default 4)")
    parser.add_argument("--only", choices=("native", "encapsulated"), help="one file kind only")
    parser.add_argument("--child", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child))))
        return 0

    results: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="pacs-bench-memory-", dir="/tmp"))
    try:
        kinds = [args.only] if args.only else ["native", "encapsulated"]
        for kind in kinds:
            path = folder / f"{kind}.dcm"
            start = time.perf_counter()
            if kind == "native":
                info = write_native(path, args.size_mb)
            else:
                fragment_bytes = (
                    args.fragment_bytes if args.fragment_bytes is not None
                    else args.fragment_kb * 1024
                )
                info = write_encapsulated(
                    path, args.size_mb, fragment_bytes, args.fragments_per_frame
                )
            write_s = time.perf_counter() - start
            report = measure(path)
            path.unlink()
            _print(kind, info, report, write_s)
            results[kind] = {"file": info, "write_s": write_s, **report}
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"memory-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "memory",
        "when": stamp,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "size_mb": args.size_mb,
        "goal_mb": GOAL_MB,
        "results": results,
    }, indent=2))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
