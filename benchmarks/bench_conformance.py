"""How much of dciodvfy's judgement becomes structured findings, and what it costs.

On every file of pydicom's test corpus and of ``pydicom-data`` that the validator judges valid
without the engine (sound files: the broken ones are the format rules' business), it prints:

* the share of dciodvfy's errors that become findings with a known rule id and, when the
  message is about an attribute, a path; the messages that do not are listed;
* findings per rule (errors and warnings of the engine);
* the CPU added per file: ``validate_instance`` with the engine against without it (this
  process plus its children, so dciodvfy's own CPU counts);
* the engine's peak memory (max RSS) on the two 1 GiB files ``bench_memory.py`` writes.

    .venv/bin/python benchmarks/bench_conformance.py [--size-mb 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pydicom
from bench_memory import write_encapsulated, write_native

from pacs_validator.dicom.config import ValidatorConfig, build_config
from pacs_validator.dicom.conformance import Locator, classify, find_engine, run_engine
from pacs_validator.dicom.rules import Severity
from pacs_validator.dicom.validation import validate_instance

RESULTS = Path(__file__).parent / "results"
GNU_TIME = "/usr/bin/time"  # Debian's time package: the engine's own max RSS


def corpus() -> list[Path]:
    """Every file of pydicom's test files and of pydicom-data (``data_store``)."""
    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # pydicom-data

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        print("pydicom-data is not installed: its files are left out", file=sys.stderr)
    return sorted(p for root in roots for p in root.rglob("*")
                  if p.is_file() and not p.name.lower().startswith("readme")
                  and p.suffix not in (".txt", ".icc", ".dump", ".py", ".pyc"))


def _cpu() -> float:
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(path: Path, config: ValidatorConfig) -> float:
    start = _cpu()
    validate_instance(path, config)
    return _cpu() - start


def coverage(files: list[Path], config: ValidatorConfig, without: ValidatorConfig
             ) -> dict[str, Any]:
    """Engine errors against the structured findings they became."""
    errors = structured = no_attribute = 0
    per_rule: Counter[str] = Counter()
    unstructured: Counter[str] = Counter()
    for path in files:
        run = run_engine(str(path), config.conformance)
        dataset = validate_instance(path, without)[1].dataset
        assert dataset is not None
        locator = Locator(dataset)
        for message in run.messages:
            classified = classify(message)
            if classified is None:
                continue
            per_rule[f"{classified.rule} ({message.severity.value})"] += 1
            if message.severity is not Severity.ERROR:
                continue
            errors += 1
            if classified.rule == "conformance.other":
                unstructured[message.text[:120]] += 1
            elif classified.tag is not None and locator.place(classified, classified.tag) is None:
                unstructured[f"(no path) {message.text[:110]}"] += 1
            elif classified.tag is None:
                no_attribute += 1
                structured += 1
            else:
                structured += 1
    return {"errors": errors, "structured": structured, "about_no_attribute": no_attribute,
            "per_rule": dict(per_rule.most_common()), "unstructured": dict(unstructured)}


def added_cpu(files: list[Path], config: ValidatorConfig, repeat: int) -> dict[str, float]:
    """Median CPU per file with the engine, without it, and the difference."""
    without = replace(config, conformance=replace(config.conformance, enabled=False))
    with_engine, plain = [], []
    for path in files:
        plain.append(statistics.median(_timed(path, without) for _ in range(repeat)))
        with_engine.append(statistics.median(_timed(path, config) for _ in range(repeat)))
    return {"with_engine_ms": statistics.median(with_engine) * 1000,
            "without_ms": statistics.median(plain) * 1000,
            "added_ms": statistics.median(a - b for a, b in zip(with_engine, plain, strict=True))
            * 1000}


def engine_peak(path: Path, config: ValidatorConfig) -> dict[str, Any]:
    """dciodvfy alone on ``path``: wall time and max RSS, measured by GNU time. (A child's
    rusage seen from here would count this interpreter's pages: a spawned child inherits its
    parent's high-water mark until it execs.)"""
    engine = find_engine()
    assert engine is not None
    start = time.perf_counter()
    answer = subprocess.run([GNU_TIME, "-f", "%M %x", engine, str(path)], capture_output=True,
                            text=True, check=False)
    max_rss_kb, exit_code = answer.stderr.strip().splitlines()[-1].split()
    return {"file_mb": round(path.stat().st_size / 2**20), "seconds":
            round(time.perf_counter() - start, 2), "max_rss_mb": round(int(max_rss_kb) / 1024),
            "exit": int(exit_code),
            "fits_limit": int(max_rss_kb) * 1024 <= config.conformance.max_memory_bytes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if find_engine() is None:
        print("dciodvfy is not installed: pip install -c constraints.txt -e '.[conformance]'")
        return 1
    config = build_config()
    without = replace(config, conformance=replace(config.conformance, enabled=False))
    files = [p for p in corpus() if validate_instance(p, without)[0].valid]
    report: dict[str, Any] = {"files": len(files), "coverage": coverage(files, config, without),
                              "cpu": added_cpu(files, config, args.repeat)}
    with tempfile.TemporaryDirectory() as folder:
        report["memory"] = {}
        writers: list[tuple[str, Callable[[Path, int], object]]] = [
            ("native", write_native),
            ("encapsulated", partial(write_encapsulated, fragment_bytes=64 * 1024,
                                     fragments_per_frame=4))]
        if not Path(GNU_TIME).exists():
            writers = []
            print(f"no {GNU_TIME} (apt-get install time): the engine's memory is not measured")
        for kind, write in writers:
            path = Path(folder) / f"{kind}.dcm"
            write(path, args.size_mb)
            report["memory"][kind] = engine_peak(path, config)
            path.unlink()
    cover = report["coverage"]
    share = 100 * cover["structured"] / cover["errors"] if cover["errors"] else 100.0
    print(f"{len(files)} valid files; dciodvfy errors: {cover['errors']}; structured "
          f"(known rule, path when about an attribute): {cover['structured']} ({share:.1f} %), "
          f"of which about no attribute: {cover['about_no_attribute']}")
    for text, count in cover["unstructured"].items():
        print(f"  not structured ({count}x): {text}")
    print("findings per rule (engine severity):")
    for rule, count in cover["per_rule"].items():
        print(f"  {count:5d}  {rule}")
    cpu = report["cpu"]
    print(f"CPU per file (median): {cpu['without_ms']:.1f} ms without the engine, "
          f"{cpu['with_engine_ms']:.1f} ms with it: +{cpu['added_ms']:.1f} ms")
    for kind, peak in report["memory"].items():
        print(f"dciodvfy on the {peak['file_mb']} MB {kind} file: {peak['seconds']} s, max RSS "
              f"{peak['max_rss_mb']} MB (exit {peak['exit']}; within max_memory_bytes: "
              f"{peak['fits_limit']})")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"conformance-{stamp}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
