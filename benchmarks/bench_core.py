"""Per-file speed of the validation core against a parsing floor and against ``dciodvfy``.

Over pydicom's bundled test corpus (every ``*.dcm`` plus the ``dicomdirtests`` files) this
times, per file, with ``time.perf_counter``: one warm-up run, then ``--repeat`` runs, keeping
the median of each file's runs.

* ``validate``          ``validate_instance(path, config)``
* ``validate+describe`` the same plus ``build_metadata`` for that one instance (as the CLI's
                        ``describe`` does); when the file is unreadable there is nothing to
                        describe and this is ``validate`` alone
* ``floor``             ``pydicom.dcmread(path)`` and a full element walk
                        (``for elem in ds.iterall(): elem.value``), pixel data included
* ``dciodvfy``          one ``dciodvfy FILE`` subprocess per file (dicom3tools), wall time,
                        process start included; the start overhead is measured separately
                        on an empty file and on ``true``

Every round of a file runs each in-process measure once, in turn (interleaved, the order
rotating from round to round), so that a change in machine load hits all of a file's
measures alike; ``dciodvfy`` is timed right after, in its own rounds, because the first
in-process run after a subprocess pays for cold caches. Each run is timed on two clocks: ``wall``
(``time.perf_counter``, what the brief asks for) and ``cpu`` (this process's CPU time plus
that of its children, i.e. of ``dciodvfy``), which other work on a shared machine does not
inflate.

Across files it reports, per clock, the median and 90th percentile of the per-file medians,
and the ratios median(validate+describe) / median(dciodvfy) (goal <= 1/3) and
median(validate+describe) / median(floor) (goal <= 3), plus the median of the per-file
ratios and validate+describe / (dciodvfy - dciodvfy's own process start).

Run: ``.venv/bin/python benchmarks/bench_core.py [--repeat N] [--no-dciodvfy]``.
Results are also written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pydicom

from pacs_validator.dicom.config import ValidatorConfig, build_config
from pacs_validator.dicom.description import DescribedInstance, build_metadata
from pacs_validator.dicom.validation import validate_instance

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
MEASURES = ("validate", "validate+describe", "floor", "dciodvfy")


def corpus() -> list[Path]:
    """Every ``*.dcm`` of pydicom's test files, then every file under ``dicomdirtests``."""
    files = sorted(TEST_FILES.glob("*.dcm"))
    dicomdir = TEST_FILES / "dicomdirtests"
    files += sorted(
        p for p in dicomdir.rglob("*")
        if p.is_file() and p.suffix.lower() != ".txt" and p.name != "README"
    )
    return files


def _label(path: Path) -> str:
    return str(path.relative_to(TEST_FILES)) if path.is_relative_to(TEST_FILES) else str(path)


def run_validate(path: Path, config: ValidatorConfig) -> None:
    validate_instance(path, config, name=str(path))


def run_validate_describe(path: Path, config: ValidatorConfig) -> None:
    result, parsed = validate_instance(path, config, name=str(path))
    instance = DescribedInstance.of(result, parsed, key=str(path))
    if instance is not None:
        build_metadata(result.summary.study_instance_uid, [instance])


def run_floor(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path)
        for element in dataset.iterall():
            element.value  # noqa: B018 - the point is to decode it


def run_dciodvfy(path: Path | str) -> None:
    subprocess.run(
        ["dciodvfy", os.fspath(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def run_true() -> None:
    subprocess.run(["true"], stdin=subprocess.DEVNULL, check=False)


CLOCKS = ("wall", "cpu")
"""``wall``: ``time.perf_counter``. ``cpu``: this process's CPU time plus its children's (for
``dciodvfy``), which other work on a shared machine does not inflate."""


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def time_interleaved(
    funcs: dict[str, Callable[[], None]], repeat: int
) -> tuple[dict[str, dict[str, float] | None], dict[str, str]]:
    """Median wall and CPU milliseconds of each function over ``repeat`` rounds.

    Each function runs once as a warm-up; then every round runs each function once, in turn,
    so that a change in machine load during a file's measurement affects all its measures
    alike. A function that raises in its warm-up is not timed: its entry is None and its
    error is returned.
    """
    errors: dict[str, str] = {}
    for name, func in funcs.items():
        try:
            func()
        except Exception as exc:  # noqa: BLE001 - a file the floor cannot read is reported
            errors[name] = f"{type(exc).__name__}: {exc}"[:200]
    timed = {name: func for name, func in funcs.items() if name not in errors}
    samples: dict[str, dict[str, list[float]]] = {
        name: {clock: [] for clock in CLOCKS} for name in timed
    }
    gc.collect()
    order = list(timed)
    for round_ in range(repeat):
        # Rotate the order each round: whatever runs first after a pause (or after another
        # measure's subprocess) pays for cold caches, and that should not always be the same.
        shift = round_ % len(order) if order else 0
        for name in order[shift:] + order[:shift]:
            func = timed[name]
            cpu = _cpu_seconds()
            wall = time.perf_counter()
            func()
            samples[name]["wall"].append(time.perf_counter() - wall)
            samples[name]["cpu"].append(_cpu_seconds() - cpu)
    medians: dict[str, dict[str, float] | None] = {name: None for name in funcs}
    for name, clocks in samples.items():
        medians[name] = {clock: statistics.median(v) * 1000 for clock, v in clocks.items()}
    return medians, errors


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolation percentile (``fraction`` in 0..1)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _value(row: dict[str, Any], measure: str, clock: str) -> float | None:
    timing = row.get(measure)
    return None if timing is None else float(timing[clock])


def summarise(rows: list[dict[str, Any]], measure: str, clock: str) -> dict[str, float] | None:
    values = [v for row in rows if (v := _value(row, measure, clock)) is not None]
    if not values:
        return None
    return {
        "files": len(values),
        "median_ms": statistics.median(values),
        "p90_ms": percentile(values, 0.9),
        "mean_ms": statistics.fmean(values),
        "total_ms": sum(values),
    }


def startup_overhead(repeat: int) -> dict[str, dict[str, float]]:
    """Process start costs, medians of at least 20 runs, by clock.

    ``true`` is a bare fork/exec; ``dciodvfy MISSING`` is dciodvfy's own start (dynamic
    linking, static initialisers) and exit with nothing read; ``dciodvfy EMPTY`` also reaches
    its IOD-selection path on a zero-byte file and prints its complaints.
    """
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.dcm"
        empty.touch()
        missing = Path(folder) / "missing.dcm"
        medians, _ = time_interleaved(
            {
                "true": run_true,
                "dciodvfy missing file": lambda: run_dciodvfy(missing),
                "dciodvfy empty file": lambda: run_dciodvfy(empty),
            },
            max(repeat, 20),
        )
    return {name: timing for name, timing in medians.items() if timing is not None}


def measure(files: list[Path], repeat: int, with_dciodvfy: bool) -> list[dict[str, Any]]:
    config = build_config()
    rows = []
    for index, path in enumerate(files, 1):
        row: dict[str, Any] = {
            "file": _label(path),
            "bytes": path.stat().st_size,
        }
        funcs: dict[str, Callable[[], None]] = {
            "validate": partial(run_validate, path, config),
            "validate+describe": partial(run_validate_describe, path, config),
            "floor": partial(run_floor, path),
        }
        medians, errors = time_interleaved(funcs, repeat)
        if with_dciodvfy:
            # Timed apart: after a subprocess the next in-process run finds cold caches.
            dciodvfy, dciodvfy_errors = time_interleaved(
                {"dciodvfy": partial(run_dciodvfy, path)}, repeat
            )
            medians.update(dciodvfy)
            errors.update(dciodvfy_errors)
        row.update(medians)
        if errors:
            row["errors"] = errors
        result, _ = validate_instance(path, config)
        row["status"] = result.status
        rows.append(row)
        if sys.stderr.isatty():
            print(f"\r{index}/{len(files)} {row['file'][-60:]:60}", end="", file=sys.stderr)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return rows


def ratio(numerator: dict[str, float] | None, denominator: dict[str, float] | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator["median_ms"] / denominator["median_ms"]


def _goal(name: str) -> str:
    return "(goal <= 0.333)" if "dciodvfy" in name else "(goal <= 3)"


def report(
    rows: list[dict[str, Any]], overhead: dict[str, dict[str, float]] | None
) -> dict[str, Any]:
    """Print the tables; return the summary that goes into the JSON."""
    # "common" = files every measure could time (the floor cannot read some broken files).
    measures = [m for m in MEASURES if any(m in row for row in rows)]
    common = [row for row in rows if all(row.get(m) is not None for m in measures)]
    vd_name = "validate+describe"
    summary: dict[str, Any] = {}
    for clock in CLOCKS:
        for label, subset in (("all files", rows), ("files the floor reads", common)):
            stats = {m: summarise(subset, m, clock) for m in measures}
            vd = stats[vd_name]
            ratios: dict[str, float | None] = {}
            for other in ("dciodvfy", "floor"):
                if other not in stats:
                    continue
                ratios[f"{vd_name} / {other}"] = ratio(vd, stats[other])
                per_file = [
                    row[vd_name][clock] / row[other][clock] for row in subset
                    if row.get(other) and row[other][clock] > 0 and row.get(vd_name)
                ]
                if per_file:
                    ratios[f"median over files of ({vd_name} / {other})"] = (
                        statistics.median(per_file)
                    )
            dciodvfy = stats.get("dciodvfy")
            if overhead and dciodvfy and vd:
                net = dciodvfy["median_ms"] - overhead["dciodvfy missing file"][clock]
                ratios[f"{vd_name} / (dciodvfy - its start)"] = (
                    vd["median_ms"] / net if net > 0 else None
                )
            summary[f"{clock}, {label}"] = {"stats": stats, "ratios": ratios}
            print(f"\n== {clock} clock, {label} ({len(subset)} files) ==")
            print(f"{'measure':20} {'files':>5} {'median ms':>10} {'p90 ms':>9} "
                  f"{'mean ms':>9} {'total ms':>9}")
            for name, stat in stats.items():
                if stat:
                    print(f"{name:20} {stat['files']:5.0f} {stat['median_ms']:10.3f} "
                          f"{stat['p90_ms']:9.3f} {stat['mean_ms']:9.3f} "
                          f"{stat['total_ms']:9.1f}")
            for name, value in ratios.items():
                if value is not None:
                    print(f"  {name:54} {value:6.3f}  {_goal(name)}")
    if overhead:
        print("\nprocess start overhead, median ms (wall / cpu):")
        for name, timing in overhead.items():
            print(f"  {name:24} {timing['wall']:7.3f} / {timing['cpu']:7.3f}")
    print(f"\nfiles with the highest {vd_name} / floor (wall):")
    ranked = sorted(
        common,
        key=lambda row: row[vd_name]["wall"] / row["floor"]["wall"],
        reverse=True,
    )
    for row in ranked[:8]:
        vd_ms, floor_ms = row[vd_name]["wall"], row["floor"]["wall"]
        print(f"  {row['file'][-48:]:48} {vd_ms:8.3f} ms vs floor {floor_ms:8.3f} ms "
              f"({vd_ms / floor_ms:.2f}x)")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per file (default 5)")
    parser.add_argument("--no-dciodvfy", action="store_true", help="skip the dciodvfy column")
    parser.add_argument("--files", nargs="*", help="only these files (default: pydicom corpus)")
    args = parser.parse_args(argv)
    with_dciodvfy = not args.no_dciodvfy
    if with_dciodvfy and shutil.which("dciodvfy") is None:
        print("dciodvfy not found (apt-get install dicom3tools), or pass --no-dciodvfy",
              file=sys.stderr)
        return 2
    files = [Path(f).resolve() for f in args.files] if args.files else corpus()
    load_before = os.getloadavg()
    overhead = startup_overhead(args.repeat) if with_dciodvfy else None
    rows = measure(files, args.repeat, with_dciodvfy)
    summary = report(rows, overhead)
    load_after = os.getloadavg()
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"on {os.cpu_count()} CPUs: other work on the machine inflates every column")
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"core-{stamp}.json"
    document = {
        "benchmark": "core",
        "when": stamp,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": os.cpu_count(), "pydicom": pydicom.__version__},
        "repeat": args.repeat,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "startup_overhead": overhead,
        "summary": summary,
        "files": rows,
    }
    out.write_text(json.dumps(document, indent=2))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
