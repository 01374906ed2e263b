"""The gateway side by side with Orthanc: the same study of N instances sent by DCMTK's
``storescu`` to Orthanc (Debian's, default SQLite storage) and to ``pacs-validator gateway
serve`` (judging and spooling every instance before its answer), in one run, twice: over
one association, and split over four associations at once.

Both receivers run on loopback ports this script picks, each on a fresh storage folder, and
are stopped after; DCMTK's tools and Orthanc run with ``TCP_NODELAY=1`` (with Nagle's
algorithm, delayed ACKs hold every DIMSE exchange). Prints, per receiver and way of
sending: instances/s, p50 and p99 of the time per C-STORE (from storescu's "Sending Store
Request" to its "Received Store Response" lines, read as they come), and the receiver's
peak RSS (VmHWM, its child processes' added: the gateway judges in worker processes). With
``--api URL`` (and ``PACS_VALIDATOR_TOKEN``), the gateway forwards the single-association
study and the time from its last C-STORE answer to STORED is printed as well.

The instances are copies of pydicom's ``CT_small.dcm`` (or ``--source FILE``), each with
its own SOPInstanceUID, all in one study.

Run: ``make orthanc dcmtk && .venv/bin/python benchmarks/bench_gateway.py [--instances N]
[--api URL]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pacs_validator.gateway.report import study_entries

COMMAND = Path(sys.executable).with_name("pacs-validator")
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
NO_DELAY = {"TCP_NODELAY": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
READY_SECONDS = 60


@dataclass
class Run:
    receiver: str
    associations: int
    instances: int
    seconds: float
    store_times: list[float]
    peak_rss_mb: float
    last_answer: float

    def row(self) -> str:
        ordered = sorted(self.store_times)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
        way = "one association" if self.associations == 1 else f"{self.associations} at once"
        return (f"| {self.receiver} | {way} | {self.instances / self.seconds:.1f} | "
                f"{1000 * statistics.median(ordered or [0]):.1f} | {1000 * p99:.1f} | "
                f"{self.peak_rss_mb:.0f} |")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def peak_rss_mb(pid: int) -> float:
    """The peak RSS (VmHWM) of ``pid`` and of its child processes, summed: the gateway's
    judging workers are children of the process that receives."""
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 + sum(map(peak_rss_mb, children))
    return 0.0


def make_study(source: Path, count: int, folder: Path) -> list[Path]:
    dataset = pydicom.dcmread(source)
    dataset.StudyInstanceUID = generate_uid()
    paths = []
    for index in range(count):
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.InstanceNumber = index + 1
        paths.append(folder / f"{index:05d}.dcm")
        dataset.save_as(paths[-1])
    return paths


@contextmanager
def serving(command: list[str], port: int, environment: dict[str, str]
            ) -> Iterator[tuple[int, int]]:
    """Run a receiver until the block ends; its port, once it listens, and its pid."""
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=120)


def orthanc(folder: Path) -> AbstractContextManager[tuple[int, int]]:
    port = free_port()
    folder.mkdir()
    configuration = folder / "orthanc.json"
    configuration.write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"), "DicomAet": "ORTHANC", "DicomPort": port,
        "HttpPort": free_port(), "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "Plugins": []}))
    return serving([ORTHANC, str(configuration)], port, NO_DELAY)


def gateway(folder: Path, api: str | None) -> AbstractContextManager[tuple[int, int]]:
    port = free_port()
    stable = "1" if api else "86400"  # without an API, nothing is forwarded
    environment = {**os.environ, "PACS_VALIDATOR_API": api or "https://api.invalid"}
    return serving([str(COMMAND), "gateway", "serve", "--spool", str(folder / "spool"),
                    "--ae-title", "GATE", "--port", str(port), "--stable-seconds", stable],
                   port, environment)


def storescu(port: int, called: str, files: list[Path], times: list[float],
             last: list[float]) -> None:
    """Send ``files`` over one association; each C-STORE's time is added to ``times``."""
    process = subprocess.Popen(["storescu", "-v", "-aet", "BENCH", "-aec", called,
                                "127.0.0.1", str(port), *map(str, files)], env=NO_DELAY,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    sent_at = None
    for line in process.stdout:
        if "Sending Store Request" in line:
            sent_at = time.monotonic()
        elif "Received Store Response" in line and sent_at is not None:
            times.append(time.monotonic() - sent_at)
            last.append(time.monotonic())
    if process.wait() != 0:
        raise RuntimeError(f"storescu to port {port} exited {process.returncode}")


def send(receiver: str, port: int, pid: int, called: str, files: list[Path],
         associations: int) -> Run:
    times: list[float] = []
    last: list[float] = []
    shares = [files[index::associations] for index in range(associations)]
    senders = [threading.Thread(target=storescu, args=(port, called, share, times, last))
               for share in shares]
    started = time.monotonic()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    seconds = time.monotonic() - started
    return Run(receiver, associations, len(files), seconds, times, peak_rss_mb(pid),
               max(last, default=started))


def time_to_stored(spool: Path, last_answer: float) -> float:
    """Seconds from the last C-STORE answer until the gateway's study is STORED."""
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        entries = [entry for entry in study_entries(spool) if entry["part"] is not None]
        if entries and all(entry["stage"] == "done" for entry in entries):
            states = {entry["state"] for entry in entries}
            if states != {"STORED"}:
                raise RuntimeError(f"the study ended {states}")
            return time.monotonic() - last_answer
        time.sleep(0.2)
    raise TimeoutError("no verdict after 30 minutes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--source", type=Path, default=Path(get_testdata_file("CT_small.dcm")))
    parser.add_argument("--api", help="forward the one-association study to this API")
    args = parser.parse_args()
    for program in ("storescu", ORTHANC):
        if not shutil.which(program):
            print(f"{program} is missing: make orthanc dcmtk", file=sys.stderr)
            return 2
    runs: list[Run] = []
    stored_after = None
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        for associations in (1, 4):
            folder = root / f"study-{associations}"
            folder.mkdir()
            files = make_study(args.source, args.instances, folder)
            with orthanc(root / f"orthanc-{associations}") as (port, pid):
                runs.append(send("Orthanc", port, pid, "ORTHANC", files, associations))
            spool_root = root / f"gateway-{associations}"
            api = args.api if associations == 1 else None
            with gateway(spool_root, api) as (port, pid):
                run = send("pacs-validator gateway", port, pid, "GATE", files, associations)
                runs.append(run)
                if api:
                    stored_after = time_to_stored(spool_root / "spool", run.last_answer)
    print(f"{args.instances} copies of {args.source.name}, storescu with TCP_NODELAY=1\n")
    print("| receiver | sent over | instances/s | p50 ms | p99 ms | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    for run in runs:
        print(run.row())
    for associations in (1, 4):
        ours, theirs = (next(r for r in runs if r.associations == associations
                             and r.receiver.startswith(name)) for name in ("pacs", "Orthanc"))
        ratio = (ours.instances / ours.seconds) / (theirs.instances / theirs.seconds)
        print(f"gateway / Orthanc over {associations} association(s): {ratio:.2f}x")
    if stored_after is not None:
        print(f"last C-STORE answer to STORED (one association, forwarded): "
              f"{stored_after:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
