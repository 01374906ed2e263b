"""Memory and time of the gateway's STOW-RS door taking one request of large parts.

``pacs-validator gateway serve --http-port 0`` runs as a process of its own, its spool in a
temporary folder under /tmp. One small request (CT_small) warms it up (imports, the rule
tables, the first judgment); its peak RSS is then reset through ``/proc/PID/clear_refs``,
and one request of ``--parts`` parts is sent, chunked in 1 MiB pieces as dicomweb-client
sends a large body. Each part is CT_small made ``--frames`` frames long (about 32 KiB a
frame), under a SOPInstanceUID of its own. The server's RSS before, its peak (VmHWM) during
the request and the time to the answer are reported; the goal is a peak growth of at most
16 MB, whatever the body's size. The folder is deleted afterwards.

Run (as root, for clear_refs): ``.venv/bin/python benchmarks/bench_stow.py [--parts 8]``.
Results are also written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pydicom
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import UID

RESULTS = Path(__file__).resolve().parent / "results"
PIECE_BYTES = 1 << 20
BOUNDARY = "bench-stow-boundary"
CT_SMALL = Path(str(get_testdata_file("CT_small.dcm")))
GOAL_MB = 16


def large_instance(frames: int) -> tuple[bytes, bytes]:
    """CT_small as a file of ``frames`` frames, and the SOPInstanceUID it holds (as bytes,
    padded as the file holds it)."""
    uid = UID("1.2.826.0.1.7.9999")
    dataset = pydicom.dcmread(CT_SMALL)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uid
    dataset.NumberOfFrames = frames
    dataset.PixelData = dataset.PixelData * frames
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset)
    return buffer.getvalue(), uid.encode()


def body(parts: Iterator[bytes]) -> Iterator[bytes]:
    """The multipart body of ``parts``, in pieces of 1 MiB."""
    for part in parts:
        yield f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        for start in range(0, len(part), PIECE_BYTES):
            yield part[start:start + PIECE_BYTES]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def large_parts(parts: int, frames: int) -> Iterator[bytes]:
    """``parts`` large instances, one at a time, each under a UID of its own (same length)."""
    encoded, uid = large_instance(frames)
    for number in range(parts):
        yield encoded.replace(uid, f"1.2.826.0.1.7.{1000 + number}".encode())


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", type=int, default=8, help="at most 8,999")
    parser.add_argument("--frames", type=int, default=4000, help="frames a part (32 KiB each)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-stow-"))
    token = secrets.token_hex(16)
    (folder / "tokens").write_text(f"BENCH {token}\n", "utf-8")
    command = [str(Path(sys.executable).with_name("pacs-validator")), "gateway", "serve",
               "--spool", str(folder / "spool"), "--port", "0", "--http-port", "0",
               "--stow-token-file", str(folder / "tokens"), "--stow-max-bytes", str(1 << 40),
               # nothing is forwarded: the part never closes while the benchmark runs
               "--api", "https://api.invalid", "--stable-seconds", "86400"]
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": f'multipart/related; type="application/dicom"; '
                               f'boundary={BOUNDARY}'}
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) as server:
            assert server.stdout is not None
            server.stdout.readline()
            url = f"http://127.0.0.1:{server.stdout.readline().rsplit(':', 1)[1].strip()}/studies"
            warm = requests.post(url, data=body(iter([CT_SMALL.read_bytes()])),
                                 headers=headers, timeout=600)
            before = memory_kb(server.pid)
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")
            started = time.perf_counter()
            answer = requests.post(url, data=body(large_parts(args.parts, args.frames)),
                                   headers=headers, timeout=3600)
            seconds = time.perf_counter() - started
            after = memory_kb(server.pid)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        spooled = sum(p.stat().st_size for p in (folder / "spool").rglob("*.dcm"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    growth_mb = (after["VmHWM"] - before["VmRSS"]) / 1000
    failed = [{"reason": f"0x{item['00081197']['Value'][0]:04X}",
               "rules": item.get("00091002", {}).get("Value", [None])[0]}
              for item in answer.json().get("00081198", {}).get("Value", [])]
    result = {"at": datetime.now(timezone.utc).isoformat(), "parts": args.parts,
              "frames": args.frames, "warm_status": warm.status_code,
              "status": answer.status_code, "failed": failed, "spooled_mb": round(spooled / 1e6, 1),
              "rss_before_mb": before["VmRSS"] / 1000, "peak_mb": after["VmHWM"] / 1000,
              "peak_growth_mb": growth_mb, "seconds": round(seconds, 2),
              "goal_met": growth_mb <= GOAL_MB}
    print(f"| {args.parts} parts, {spooled / 2**20:,.0f} MiB spooled | {answer.status_code} "
          f"| {before['VmRSS'] / 1000:.1f} MB | {after['VmHWM'] / 1000:.1f} MB "
          f"| {growth_mb:.1f} MB | {'met' if result['goal_met'] else 'NOT met'} "
          f"| {seconds:.1f} s |")
    for failure in failed:
        print(f"failed: {failure['reason']} {failure['rules']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"stow-{int(time.time())}.json").write_text(json.dumps(result, indent=1))
    return 0 if answer.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
