"""``pacs-validator upload`` on a folder of one large study, against the stack on LocalStack:
how long the installed command takes to find the study, send it and report its verdict.

The folder holds ``--files`` real corpus files re-identified per instance (4 series; see
``tests-local/corpus_studies.py``). The command runs as a user runs it (``--json``, plain
progress on stderr); its wall time is split at the last plain progress line (every file sent)
and the moment it exits (verdict printed).

    .venv/bin/python benchmarks/bench_upload_cli.py --files 1000     # deployed stack needed

Not part of the test suite. Results go to benchmarks/results/upload-cli-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_e2e import RESULTS, ROOT, stack_json

sys.path.insert(0, str(ROOT / "tests-local"))
from corpus_studies import reidentified_study

COMMAND = Path(sys.executable).with_name("pacs-validator")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--stack-name", default="pacs-validator")
    args = parser.parse_args()
    environment = {**os.environ, **stack_json("env", "--json", args.stack_name)}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "study"
        folder.mkdir()
        size = 0
        for name, data in reidentified_study(args.files, seed=f"cli-{time.time()}"):
            (folder / name).write_bytes(data)
            size += len(data)
        output = Path(scratch) / "status.json"
        started = time.monotonic()
        with output.open("w") as status_file:  # a file: the status of every file is large
            process = subprocess.Popen(
                [str(COMMAND), "upload", str(folder), "--json", "--jobs", str(args.jobs),
                 "--timeout", "1800"], cwd=scratch, env=environment, text=True,
                stdout=status_file, stderr=subprocess.PIPE)
            sent_at = None
            assert process.stderr is not None
            for line in process.stderr:
                if line.startswith("all 1 study(ies)"):
                    sent_at = time.monotonic()
            process.wait()
        ended = time.monotonic()
        documents = json.loads(output.read_text())
    state = documents[0]["state"] if documents else "none"
    sent = (sent_at or ended) - started
    row = {"files": args.files, "bytes": size, "jobs": args.jobs, "exit_code": process.returncode,
           "state": state, "send_seconds": round(sent, 1),
           "verdict_seconds": round(ended - started, 1),
           "files_per_second_sent": round(args.files / sent, 1)}
    print("| files | MB | jobs | exit | state | sent after s | verdict after s | files/s sent |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.files} | {size / 1e6:.1f} | {args.jobs} | {process.returncode} | {state} "
          f"| {row['send_seconds']} | {row['verdict_seconds']} | "
          f"{row['files_per_second_sent']} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"upload-cli-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(row, indent=2))
    print(f"results: {out.relative_to(ROOT)}")
    return 0 if state == "STORED" else 1


if __name__ == "__main__":
    sys.exit(main())
