"""Time per instance of one large study end to end on LocalStack, next to a small one's.

Each study (real corpus files re-identified per instance, 4 series; see
``tests-local/corpus_studies.py``) is uploaded through POST /upload and the study-wide
presigned POST, 8 files at a time, and timed from the start of the upload to the STORED
entry of its timeline; the VALIDATING entry (every file validated and counted) and the VALID
one (the judge's verdict) split that time into validating, judging and storing. Studies run
one after another, so each has the stack to itself.
Goal: the 2,000-instance study's time per instance at most 1.5x the 20-instance one's.

    make bench-scale-e2e                      # deploys if needed; 20 and 2,000: ~15 min
    .venv/bin/python benchmarks/bench_e2e_scale.py --sizes 20,300

Not part of the test suite. Results go to benchmarks/results/e2e-scale-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench_e2e import RESULTS, ROOT, deployed_client

sys.path.insert(0, str(ROOT / "tests-local"))
from corpus_studies import reidentified_study


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20,2000", help="comma-separated study sizes")
    parser.add_argument("--stack-name", default="pacs-validator")
    parser.add_argument("--poll", type=float, default=2.0)
    args = parser.parse_args()
    client = deployed_client(args.stack_name)
    client.wait(client.upload(dict(reidentified_study(1, seed=f"warm-{time.time()}"))))
    rows = []
    print("| instances | upload s | upload → VALIDATING s | → VALID s | → STORED s | "
          "s per instance |\n|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        files = dict(reidentified_study(size, seed=f"e2e-scale-{size}-{time.time()}"))
        started = time.time()
        study_id = client.upload(files)
        uploaded = time.time()
        status = client.wait(study_id, timeout=900, interval=args.poll)
        if status["state"] != "STORED":
            raise RuntimeError(f"{study_id} ended {status['state']}")
        reached = {entry["state"]: float(entry["at"]) - started for entry in status["timeline"]}
        row = {"instances": size, "upload_seconds": uploaded - started,
               "validating_seconds": reached["VALIDATING"], "valid_seconds": reached["VALID"],
               "stored_seconds": reached["STORED"],
               "seconds_per_instance": reached["STORED"] / size}
        rows.append(row)
        print(f"| {size} | {row['upload_seconds']:.1f} | {row['validating_seconds']:.1f} | "
              f"{row['valid_seconds']:.1f} | {row['stored_seconds']:.1f} | "
              f"{row['seconds_per_instance']:.3f} |", flush=True)
    if len(rows) > 1:
        ratio = rows[-1]["seconds_per_instance"] / rows[0]["seconds_per_instance"]
        print(f"\ntime per instance, {rows[-1]['instances']} / {rows[0]['instances']}: "
              f"{ratio:.2f} (goal <= 1.5)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"e2e-scale-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
