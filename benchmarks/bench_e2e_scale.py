"""Time per instance of one large study end to end on LocalStack, next to a small one's.

Each study (real corpus files re-identified per instance, 4 series; see
``tests-local/corpus_studies.py``) is uploaded through POST /upload and its per-file
presigned POSTs (those past the first 10 asked for 100 at a time), 8 files at a time, and
timed from the start of the upload to the STORED entry of its timeline; the VALIDATING entry
(every file validated and counted) and the VALID one (the judge's verdict) split that time
into validating, judging and storing. Studies run one after another, so each has the stack
to itself. On a local stack, the CPU of LocalStack, of its DynamoDB backend and of the whole
machine (read from /proc every half second) is split the same way, per phase: where the
machine's two cores went while the study was in it. Goal: the 2,000-instance study's time
per instance at most 1.5x the 20-instance one's.

    make bench-scale-e2e                      # deploys if needed; 20 and 2,000: ~15 min
    .venv/bin/python benchmarks/bench_e2e_scale.py --sizes 20,300

Not part of the test suite. Results go to benchmarks/results/e2e-scale-<time>.json.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import threading
import time
from types import TracebackType
from typing import Any

from bench_e2e import RESULTS, ROOT, cpu_seconds, deployed_client

sys.path.insert(0, str(ROOT / "tests-local"))
from corpus_studies import reidentified_study


def calibration_ms() -> float:
    """The best of five runs of a fixed pure-Python loop, in ms: how fast this machine is
    right now. Its speed drifts by more than 2x over hours, so only runs with similar
    calibrations (or back to back) compare."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        sum(number * number for number in range(1_000_000))
        best = min(best, time.perf_counter() - start)
    return best * 1000


PHASES = (("validating", "started", "VALIDATING"), ("judging", "VALIDATING", "VALID"),
          ("storing", "VALID", "STORED"))
"""Each phase of a study's time: its name, and the timeline entries it runs between."""


class CpuTrace:
    """``cpu_seconds()`` every ``every`` seconds in a thread while in use, so that a study's
    CPU can be split by the moments of its timeline (None outside a local stack)."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.moments: list[float] = []
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = cpu_seconds()
            if sample is None:
                return
            self.moments.append(time.time())
            self.samples.append(sample)
            self._stop.wait(self.every)

    def __enter__(self) -> CpuTrace:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def used(self, start: float, end: float) -> tuple[float, dict[str, float]] | None:
        """The seconds between the first samples at or after ``start`` and ``end`` (the last
        sample when none is after; within half a second of each), and the CPU seconds each
        part used in them. None when both fall on one sample: a phase too short to measure,
        not one that used nothing."""
        first, last = (min(bisect.bisect_left(self.moments, moment), len(self.moments) - 1)
                       for moment in (start, end))
        if first >= last:
            return None
        return self.moments[last] - self.moments[first], {
            part: self.samples[last][part] - self.samples[first][part]
            for part in self.samples[last] if part in self.samples[first]}


def phase_rows(size: int, trace: CpuTrace, moments: dict[str, float]) -> list[dict[str, Any]]:
    """For each phase long enough to measure: its seconds, and the shares of one core (100 %
    a core) that the machine, LocalStack and its DynamoDB backend used over the samples that
    bound it, with the machine's CPU per instance."""
    rows: list[dict[str, Any]] = []
    for name, begin, end in PHASES:
        measured = trace.used(moments[begin], moments[end])
        if measured is None:
            continue
        sampled, used = measured
        row: dict[str, Any] = {"phase": name, "seconds": moments[end] - moments[begin],
                               "machine_ms_per_instance": used["machine"] / size * 1000}
        row.update({f"{part}_percent": used.get(part, 0.0) / sampled * 100
                    for part in ("machine", "localstack", "dynamodb")})
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20,2000", help="comma-separated study sizes")
    parser.add_argument("--stack-name", default="pacs-validator")
    parser.add_argument("--poll", type=float, default=2.0)
    args = parser.parse_args()
    client = deployed_client(args.stack_name)
    client.wait(client.upload(dict(reidentified_study(1, seed=f"warm-{time.time()}"))))
    calibration = calibration_ms()
    print(f"machine calibration: {calibration:.0f} ms (a fixed pure-Python loop; lower is faster)")
    rows: list[dict[str, Any]] = []
    print("| instances | upload s | upload → VALIDATING s | → VALID s | → STORED s | "
          "s per instance |\n|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        files = dict(reidentified_study(size, seed=f"e2e-scale-{size}-{time.time()}"))
        with CpuTrace() as trace:
            started = time.time()
            study_id = client.upload(files)
            uploaded = time.time()
            status = client.wait(study_id, timeout=900, interval=args.poll)
        if status["state"] != "STORED":
            raise RuntimeError(f"{study_id} ended {status['state']}")
        moments = {"started": started,
                   **{entry["state"]: float(entry["at"]) for entry in status["timeline"]}}
        reached = {state: moment - started for state, moment in moments.items()}
        row: dict[str, Any] = {"instances": size, "upload_seconds": uploaded - started,
               "validating_seconds": reached["VALIDATING"], "valid_seconds": reached["VALID"],
               "stored_seconds": reached["STORED"],
               "seconds_per_instance": reached["STORED"] / size,
               "phases": phase_rows(size, trace, moments)}
        rows.append(row)
        print(f"| {size} | {row['upload_seconds']:.1f} | {row['validating_seconds']:.1f} | "
              f"{row['valid_seconds']:.1f} | {row['stored_seconds']:.1f} | "
              f"{row['seconds_per_instance']:.3f} |", flush=True)
    if any(row["phases"] for row in rows):
        print("\n| instances | phase | s | machine % | LocalStack % | DynamoDB backend % | "
              "machine ms per instance |\n|---|---|---|---|---|---|---|")
        for row in rows:
            for phase in row["phases"]:
                print(f"| {row['instances']} | {phase['phase']} | {phase['seconds']:.1f} | "
                      f"{phase['machine_percent']:.0f} | {phase['localstack_percent']:.0f} | "
                      f"{phase['dynamodb_percent']:.0f} | "
                      f"{phase['machine_ms_per_instance']:.1f} |")
        print("(% of one core: the machine has two; the machine's share includes the handlers, "
              "dciodvfy and this client)")
    if len(rows) > 1:
        ratio = rows[-1]["seconds_per_instance"] / rows[0]["seconds_per_instance"]
        print(f"\ntime per instance, {rows[-1]['instances']} / {rows[0]['instances']}: "
              f"{ratio:.2f} (goal <= 1.5)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"e2e-scale-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"calibration_ms": calibration, "studies": rows}, indent=2))
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
