"""The main job, end to end on the deployed stack: upload two real studies through the API,
wait for their verdicts, and show what was stored.

Run by `make demo` after `local-runtime/stack up` and `deploy`; reads the stack's outputs
through `local-runtime/stack`, talks HTTP to the API Gateway endpoint and uploads through
the presigned POSTs the API hands out — exactly what a client of the service does. Its two
steps (upload, verdict) print their time as the demo's other steps do (`steps.py`), then
what each study became.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pydicom
from steps import step_label, step_time  # local-runtime/steps.py, beside this script

from pacs_validator.transfer.client import PacsClient, read_files, request, studies_in

HERE = Path(__file__).resolve().parent
STACK_NAME = os.environ.get("PACS_STACK_NAME", "pacs-validator")
CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
T = TypeVar("T")


def stack_json(*args: str) -> Any:
    output = subprocess.run([str(HERE / "stack"), *args], check=True, capture_output=True,
                            text=True).stdout
    return json.loads(output)


def sample_studies() -> dict[str, list[Path]]:
    """Third-party files from pydicom's corpus: one single-file and one multi-file study."""
    by_study = studies_in(CORPUS / "dicomdirtests" / "98892003")
    return {
        "single-file CT study (CT_small.dcm)": [CORPUS / "CT_small.dcm"],
        "multi-file MR study (dicomdirtests/98892003)": max(by_study.values(), key=len),
    }


def print_metadata(document: dict[str, Any]) -> None:
    study = document["study"]
    print(f"    study {study['instance_uid']}  date {study['date']}  "
          f"description {study['description']!r}")
    print(f"    equipment {document['equipment']['manufacturer']} "
          f"{document['equipment']['model']}")
    for series in document["series"]:
        preview = series["preview"].split("/", 2)[-1] if series.get("preview") else "no preview"
        print(f"    series {series['number']} {series['modality']} "
              f"{series['description']!r}: {len(series['instances'])} instance(s), {preview}")


def timed_step(name: str, step: Callable[[], T]) -> T:
    """``step``'s result, its line printed as the demo's other steps print theirs."""
    print(step_label(name), end="", flush=True)
    started = time.monotonic()
    result = step()
    print(step_time(time.monotonic() - started))
    return result


def main() -> int:
    outputs = stack_json("outputs", STACK_NAME)
    environment = stack_json("env", "--json", STACK_NAME)
    api_base = environment["PACS_VALIDATOR_API"]
    store = outputs["StoreBucketName"]
    client = PacsClient(api_base, token=environment.get("PACS_VALIDATOR_TOKEN"))
    studies = sample_studies()
    study_ids = timed_step("upload", lambda: {title: client.upload(read_files(paths))
                                              for title, paths in studies.items()})
    statuses = timed_step("verdict", lambda: {title: client.wait(study_id)
                                              for title, study_id in study_ids.items()})
    print(f"\nAPI: {api_base}")
    all_stored = True
    for title, paths in studies.items():
        study_id, status = study_ids[title], statuses[title]
        print(f"\n== {title}: {len(paths)} file(s)")
        print(f"  study_id {study_id}: {status['state']} (status {status['status']})")
        if status.get("stored_as"):  # sent before: its instances are stored under that id
            study_id = status["stored_as"]
            print(f"  stored already as study {study_id}: nothing was stored again")
        counts = status["counts"]
        print(f"  files: {counts['received']} of {counts['declared']} declared received, "
              f"{counts.get('invalid', 0)} invalid")
        print("  timeline: " + " → ".join(entry["state"] for entry in status["timeline"]
                                          if "file" not in entry))
        for finding in status["findings"]:
            print(f"  {finding['severity']}: {finding['rule']} {finding['message']}")
        if status["state"] != "STORED":
            all_stored = False
            continue
        metadata = json.loads(request("GET", status["links"]["metadata"]).body)
        print(f"  metadata.json (through its presigned link, {len(status['links']['previews'])}"
              f" series preview link(s) beside it):")
        print_metadata(metadata)
        print(f"  stored under s3://{store}/studies/{study_id}/ — look with:")
        print(f"    awslocal s3 ls s3://{store}/studies/{study_id}/ --recursive")
        print(f"    awslocal s3 cp s3://{store}/studies/{study_id}/metadata.json -")
        print(f"    curl -s -H \"Authorization: Bearer $PACS_VALIDATOR_TOKEN\" "
              f"'{api_base}/status/{study_id}?limit=5'")
    print(f"\nupload page: {api_base}/ (paste $PACS_VALIDATOR_TOKEN into its token field)")
    print("\n(awslocal is in .local/venvs/localstack/bin; `eval \"$(local-runtime/stack env)\"` "
          "points plain aws/boto3 at LocalStack and sets PACS_VALIDATOR_API and "
          "PACS_VALIDATOR_TOKEN; `make down` stops it.)")
    return 0 if all_stored else 1


if __name__ == "__main__":
    sys.exit(main())
