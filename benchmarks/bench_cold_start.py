"""Cold imports: each built handler imported in a fresh Python 3.12, from its built layers.

What Lambda does before a function's first invocation, short of starting the runtime: put
the function's code first on ``sys.path``, then its layers (``/opt/python``), then the
runtime's own boto3, and import the handler module. This script does the same from a
``sam build`` output (by default ``.local/build/preflight.build``, which ``make preflight`` makes),
with the layers each function gets in the built template for this machine's architecture:

- the interpreter is the Python 3.12 that ``local-runtime/find-python 3.12`` finds, started
  with ``-I -S`` (no site-packages, no .pth files: only the build and the runtime's boto3 can
  be imported, as on Lambda) and ``-B``: Lambda's ``/opt`` and ``/var/task`` are read-only,
  so what a layer does not ship compiled is compiled again on every cold start, and here too
  (no ``__pycache__`` is written into the build);
- the runtime's boto3 is ``boto3`` of ``constraints.txt`` installed with its dependencies in
  ``.local/bench/lambda-runtime`` (made on first use; on Lambda, ``/var/runtime``), after
  the layers on ``sys.path`` as there;
- the environment is Lambda's (region, function name, test credentials, ``LAMBDA_TASK_ROOT``)
  plus each variable the template gives the function: a ``Ref`` to a parameter is its
  default, any other value a dummy. Tracing is off (``POWERTOOLS_TRACE_DISABLED=true``)
  unless ``--tracing``: on, as ``Tracing: Active`` makes it on AWS.

Each function is imported ``--runs`` times (default 5), the functions taking turns, each
import in a new process. Printed per function, medians of the runs: the import time
(``time.perf_counter`` around ``import app``); its CPU time (``time.process_time``, which the
load of other processes on a shared machine does not add to); the process's peak RSS after
it (``VmHWM``, the interpreter's own included; not ``ru_maxrss``, which keeps the high-water
mark of this script, forked before the exec); which heavy packages the import loaded; and
``clients s``, the time then taken to make every AWS client the handler's ``clients`` can
make (they are made on first use: part of the first invocations, not of the import).
``--packages`` adds one ``-X importtime`` run per function, its import time summed per
top-level package (self times), largest first: where an import's time goes.

Goals (issue 17): at most 0.35 s for the validator and the API, 0.5 s for the descriptor.

    make preflight                                        # the build (or any sam build dir)
    .venv/bin/python benchmarks/bench_cold_start.py       # ~10 s: --runs N, --packages
    .venv/bin/python benchmarks/bench_cold_start.py --build-dir DIR --arch x86_64

Not part of the test suite. Results go to benchmarks/results/cold-start-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "local-runtime"))
from preflight import MACHINES, function_layers, load_template, of_type  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
RUNTIME_DIR = REPO / ".local" / "bench" / "lambda-runtime"
GOALS_S = {"ApiFunction": 0.35, "ValidatorFunction": 0.35, "DescriptorFunction": 0.5}
HEAVY = ("numpy", "PIL", "aws_xray_sdk.core", "boto3", "pydicom")
"""Packages whose presence after an import says what the import paid for."""
LAMBDA_ENVIRONMENT = {
    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "LANG": "en_US.UTF-8", "TZ": ":UTC",
}
CHILD = """
import json, re, sys, time
sys.path[:0] = json.loads(sys.argv[1])
started, cpu_started = time.perf_counter(), time.process_time()
import app
seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
with open("/proc/self/status") as status:
    peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1))
loaded = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
clients_seconds = None
if hasattr(app, "clients"):  # made on first use: what the first invocations pay instead
    started = time.perf_counter()
    for make in (app.clients.s3, app.clients.dynamodb, app.clients.events, app.clients.lambda_):
        make()
    app.clients.table(app.settings.status_table)
    clients_seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_kb / 1024,
                  "loaded": loaded, "clients_seconds": clients_seconds}))
"""


def find_python() -> str:
    found = subprocess.run([str(REPO / "local-runtime" / "find-python"), "3.12"], check=True,
                           capture_output=True, text=True)
    return found.stdout.strip()


def lambda_runtime() -> Path:
    """Lambda's own boto3 (``/var/runtime``): the pinned boto3 and its dependencies."""
    if not (RUNTIME_DIR / "boto3").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "--target", str(RUNTIME_DIR),
                        "-c", str(REPO / "constraints.txt"), "boto3"], check=True)
    return RUNTIME_DIR


def environment_value(value: Any, parameters: dict[str, Any], name: str) -> str:
    """A template environment value as Lambda would see it: a parameter's default for a
    ``Ref`` to a parameter, else a dummy (resource names are never called here)."""
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, dict) and value.get("Ref") in parameters:
        return str(parameters[value["Ref"]].get("Default", ""))
    return f"bench-{name.lower()}"


def function_environment(template: dict[str, Any], name: str, code: Path,
                         tracing: bool) -> dict[str, str]:
    function = template["Resources"][name]["Properties"]
    variables = {**template.get("Globals", {}).get("Function", {}).get("Environment", {}).get(
        "Variables", {}), **function.get("Environment", {}).get("Variables", {})}
    parameters = template.get("Parameters", {})
    memory = function.get("MemorySize") or template.get("Globals", {}).get("Function", {}).get(
        "MemorySize", 128)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **LAMBDA_ENVIRONMENT,
            **({} if tracing else {"POWERTOOLS_TRACE_DISABLED": "true"}),
            "AWS_LAMBDA_FUNCTION_NAME": f"bench-{name}", "LAMBDA_TASK_ROOT": str(code),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            **{key: environment_value(value, parameters, key)
               for key, value in variables.items()}}


def import_paths(build_dir: Path, template: dict[str, Any], name: str, arch: str) -> list[str]:
    """The function's code, then its layers' folders as Lambda puts them on ``sys.path``
    (``/opt/python/lib/python3.12/site-packages``, then ``/opt/python``), then boto3."""
    layers = [build_dir / layer for layer in
              function_layers(template, template["Resources"][name], arch)]
    return [str(build_dir / name),
            *(str(layer / "python" / "lib" / "python3.12" / "site-packages") for layer in layers),
            *(str(layer / "python") for layer in layers), str(lambda_runtime())]


def imported(python: str, paths: list[str], environment: dict[str, str], code: Path,
             importtime: bool = False) -> dict[str, Any]:
    """One import of the handler in a fresh interpreter."""
    command = [python, "-I", "-S", "-B", *(["-X", "importtime"] if importtime else []), "-c", CHILD,
               json.dumps(paths), json.dumps(HEAVY)]
    done = subprocess.run(command, env=environment, cwd=code, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"importing {code / 'app.py'} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    if importtime:
        result["packages_ms"] = package_times(done.stderr)
    return result


def package_times(importtime: str) -> dict[str, float]:
    """``-X importtime`` output summed per top-level package: self time, in ms."""
    totals: Counter[str] = Counter()
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, module = (part.strip() for part in line[len("import time:"):].split("|"))
        totals[module.split(".")[0]] += int(self_us) / 1000
    return dict(totals.most_common())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", type=Path,
                        default=REPO / ".local" / "build" / "preflight.build")
    parser.add_argument("--arch", choices=sorted(MACHINES),
                        default="arm64" if platform.machine() == "aarch64" else "x86_64")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tracing", action="store_true",
                        help="tracing on, as the template's Tracing: Active makes it on AWS")
    parser.add_argument("--packages", action="store_true",
                        help="also print where each import's time goes, per package")
    args = parser.parse_args(argv)
    args.build_dir = args.build_dir.resolve()  # the imports run in each function's folder
    if not (args.build_dir / "template.yaml").exists():
        raise SystemExit(f"no build in {args.build_dir}: run make preflight (or sam build)")
    template = load_template(args.build_dir)
    python = find_python()
    functions = sorted(of_type(template, "AWS::Serverless::Function"))
    setups = {name: (import_paths(args.build_dir, template, name, args.arch),
                     function_environment(template, name, args.build_dir / name,
                                          args.tracing),
                     args.build_dir / name) for name in functions}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in functions}
    for _ in range(args.runs):  # the functions take turns: load changes hit them alike
        for name in functions:
            runs[name].append(imported(python, *setups[name]))

    results: dict[str, Any] = {}
    print(f"{'function':<20} {'import s':>8} {'goal s':>6}      {'cpu s':>5} {'peak RSS MB':>11} "
          f"{'clients s':>9}  loaded")
    for name in functions:
        seconds = statistics.median(run["seconds"] for run in runs[name])
        cpu = statistics.median(run["cpu_seconds"] for run in runs[name])
        made = [run["clients_seconds"] for run in runs[name] if run["clients_seconds"] is not None]
        clients = statistics.median(made) if made else None
        rss = statistics.median(run["peak_rss_mb"] for run in runs[name])
        loaded = sorted({module for run in runs[name] for module in run["loaded"]})
        goal = GOALS_S.get(name)
        results[name] = {"median_s": seconds, "median_cpu_s": cpu, "median_peak_rss_mb": rss,
                         "median_clients_s": clients, "loaded": loaded,
                         "goal_s": goal, "runs": runs[name]}
        verdict = "" if goal is None else (" ok" if seconds <= goal else " OVER")
        made_s = "-" if clients is None else f"{clients:.3f}"
        print(f"{name:<20} {seconds:>8.3f} {goal or '-':>6}{verdict:<5} {cpu:>5.3f} {rss:>11.1f} "
              f"{made_s:>9}  {', '.join(loaded) or '-'}")
    if args.packages:
        for name in functions:
            profile = imported(python, *setups[name], importtime=True)["packages_ms"]
            results[name]["packages_ms"] = profile
            top = ", ".join(f"{package} {ms:.0f}" for package, ms in list(profile.items())[:10])
            print(f"\n{name} (ms, one -X importtime run): {top}")

    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"cold-start-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "cold-start", "when": stamp, "build_dir": str(args.build_dir),
        "arch": args.arch, "python": python, "runs": args.runs, "tracing": args.tracing,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()},
        "results": results}, indent=2))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
