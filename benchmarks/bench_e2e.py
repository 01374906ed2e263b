"""End-to-end throughput and latency on the local (Docker-less) runtime, and stack start-up.

Measures, on a deployed stack (`make deploy` first, or pass --cold to time start-up too):
- start-up: `stack up` from nothing, `deploy`, and the first (cold) versus later (warm)
  requests through the API and through the pipeline;
- throughput and latency, open loop: C concurrent clients upload N studies (one-file CT, or
  the 11-file MR study) through POST /upload + presigned POSTs without waiting for verdicts;
  then every study is polled to its end. Latency is upload start -> the STORED entry of the
  study's timeline; throughput is instances stored per second from the first upload to the
  last STORED;
- CPU per stored instance over that phase (polling included), read from /proc: of the
  LocalStack `local-runtime/stack` started (one process, one interpreter lock), of its
  DynamoDB backend, and of the whole machine (every process on every core, this client's
  too). With DynamoDB out of LocalStack's process the machine's two cores, not LocalStack's
  one, are what the throughput runs into, so the last figure is the one to watch.

Not part of the test suite. Results go to benchmarks/results/e2e-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file

from pacs_validator.transfer.client import PacsClient, read_files, studies_in

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "local-runtime" / "stack"
LOCALSTACK_PID = ROOT / ".local" / "localstack.pid"
RESULTS = ROOT / "benchmarks" / "results"


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def stack_json(*args: str) -> Any:
    return json.loads(subprocess.run([str(STACK), *args], check=True, capture_output=True,
                                     text=True).stdout)


def deployed_client(stack_name: str) -> PacsClient:
    """A client of the deployed API, with the token `stack env` finds (TOKEN auth)."""
    environment = stack_json("env", "--json", stack_name)
    return PacsClient(environment["PACS_VALIDATOR_API"],
                      token=environment.get("PACS_VALIDATOR_TOKEN"))


def one_study(client: PacsClient, files: dict[str, bytes], poll: float = 1.0) -> float:
    """Seconds from the start of POST /upload to the STORED entry of the study's timeline.

    The timeline's millisecond timestamps come from the same clock, so polling can be slow
    (it goes through the API Lambda too, and fast polling would load the machine it measures).
    """
    started = time.time()
    study_id = client.upload(files)
    status = client.wait(study_id, timeout=600, interval=poll)
    if status["state"] != "STORED":
        raise RuntimeError(f"{study_id} ended {status['state']}")
    stored_at = next(float(e["at"]) for e in status["timeline"] if e["state"] == "STORED")
    return stored_at - started


def mr_study() -> list[Path]:
    """The largest real multi-file study of pydicom's dicomdirtests set (11 MR files)."""
    corpus = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "98892003"
    return max(studies_in(corpus).values(), key=len)


def upload_timed(client: PacsClient, files: dict[str, bytes]) -> tuple[str, float]:
    """(study id, time the upload started): POST /upload and the presigned POSTs only."""
    began = time.time()
    return client.upload(files), began


def stored_at(client: PacsClient, study_id: str, poll: float) -> float:
    """When the study's timeline says it was STORED (waiting for it if need be)."""
    status = client.wait(study_id, timeout=900, interval=poll)
    if status["state"] != "STORED":
        raise RuntimeError(f"{study_id} ended {status['state']}")
    return next(float(e["at"]) for e in status["timeline"] if e["state"] == "STORED")


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The child processes of every thread of ``pid`` (threads may end meanwhile)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children.extend(int(child) for child in (task / "children").read_text().split())
    return children


def cpu_seconds() -> dict[str, float] | None:
    """CPU seconds used so far by the local LocalStack process, by its DynamoDB backend
    (``localstack_nodocker.dynamodb``), and by the whole machine (every core, every process:
    the handlers, short-lived ones such as dciodvfy, and this client too). None when LocalStack
    is not ours to read (another endpoint, or no /proc)."""
    try:
        localstack = int(LOCALSTACK_PID.read_text().strip())
        used = {"localstack": process_cpu_seconds(localstack)}
        for child in _children(localstack):
            with contextlib.suppress(OSError):  # a handler process may end meanwhile
                if b"localstack_nodocker.dynamodb" in Path(f"/proc/{child}/cmdline").read_bytes():
                    used["dynamodb"] = process_cpu_seconds(child)
        busy = Path("/proc/stat").read_text().split("\n")[0].split()[1:]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, busy[:8])
    used["machine"] = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return used


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--poll", type=float, default=2.0,
                        help="seconds between GET /status polls of each client (default 2)")
    parser.add_argument("--workload", choices=("ct", "mr"), default="ct",
                        help="ct: one-file studies (CT_small); mr: the 11-file MR study")
    parser.add_argument("--stack-name", default="pacs-validator")
    parser.add_argument("--cold", action="store_true",
                        help="stop LocalStack first and time up + deploy + cold requests")
    args = parser.parse_args()
    results: dict[str, Any] = {"studies": args.studies, "concurrency": args.concurrency,
                               "workload": args.workload, "poll_seconds": args.poll}
    if args.cold:
        subprocess.run([str(STACK), "down"], check=True, capture_output=True)
        results["up_seconds"] = timed([str(STACK), "up"])
        results["deploy_seconds"] = timed([str(STACK), "deploy", str(ROOT / "template.yaml"),
                                           args.stack_name, "--parameter-overrides",
                                           "Stage=local", "SnapStart=Disabled",
                                           "RequestsPerAddress=0"])
    client = deployed_client(args.stack_name)

    health = []
    for _ in range(5):
        started = time.perf_counter()
        client.status("0" * 32)
        health.append(time.perf_counter() - started)
    results["api_first_request_seconds"] = health[0]
    results["api_warm_request_seconds"] = statistics.median(health[1:])
    ct = {"ct.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes()}
    results["pipeline_first_study_seconds"] = one_study(client, ct, poll=0.05)
    results["pipeline_second_study_seconds"] = one_study(client, ct, poll=0.05)
    study = ct if args.workload == "ct" else read_files(mr_study())

    cpu_before = cpu_seconds()
    started = time.time()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        uploads = list(pool.map(lambda _: upload_timed(client, study), range(args.studies)))
    uploaded = time.time()
    stored = [stored_at(client, study_id, args.poll) for study_id, _ in uploads]
    latencies = [done - began for (_, began), done in zip(uploads, stored, strict=True)]
    wall = max(stored) - started
    cpu_after = cpu_seconds()
    if cpu_before is not None and cpu_after is not None:
        for part in cpu_before.keys() & cpu_after.keys():
            results[f"{part}_cpu_ms_per_instance"] = \
                (cpu_after[part] - cpu_before[part]) * 1000 / (args.studies * len(study))
    results.update(
        upload_seconds=uploaded - started,
        wall_seconds=wall,
        instances=args.studies * len(study),
        instances_per_second=args.studies * len(study) / wall,
        latency_p50_seconds=percentile(latencies, 0.5),
        latency_p90_seconds=percentile(latencies, 0.9),
        latency_max_seconds=max(latencies),
    )
    for key, value in results.items():
        print(f"{key:32} {value:.3f}" if isinstance(value, float) else f"{key:32} {value}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"e2e-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
