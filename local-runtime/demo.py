"""The main job, end to end on the deployed stack: upload two real studies through the API,
send a third to the DICOM gateway with C-STORE, wait for their verdicts, and show what was
stored.

Run by `make demo` after `local-runtime/stack up` and `deploy`; reads the stack's outputs
through `local-runtime/stack`, talks HTTP to the API Gateway endpoint and uploads through
the presigned POSTs the API hands out — exactly what a client of the service does. The
gateway step starts `pacs-validator gateway serve` on a loopback port and sends it a study
with DCMTK's `storescu` (pynetdicom's where Debian's dcmtk is not installed), as a modality
would. Its steps (upload, verdict, gateway) print their time as the demo's other steps do
(`steps.py`), then what each study became.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pydicom
from steps import step_label, step_time  # local-runtime/steps.py, beside this script

from pacs_validator.gateway.report import study_entries
from pacs_validator.transfer.client import PacsClient, read_files, request, studies_in

HERE = Path(__file__).resolve().parent
STACK_NAME = os.environ.get("PACS_STACK_NAME", "pacs-validator")
CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
T = TypeVar("T")
COMMAND = Path(sys.executable).with_name("pacs-validator")
GATEWAY_AE, MODALITY_AE = "PACSVALIDATOR", "DEMO-CT"
GATEWAY_STUDY = "CT study sent by C-STORE to the gateway (dicomdirtests/98892001)"
LOGS = HERE.parent / ".local" / "demo"


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sender(port: int, files: list[Path]) -> list[str]:
    """The command that C-STOREs ``files`` as a modality would: DCMTK's, else pynetdicom's."""
    if shutil.which("storescu"):
        return ["storescu", "-aet", MODALITY_AE, "-aec", GATEWAY_AE, "127.0.0.1", str(port),
                *map(str, files)]
    return [sys.executable, "-m", "pynetdicom", "storescu", "-aet", MODALITY_AE,
            "-aec", GATEWAY_AE, "127.0.0.1", str(port), *map(str, files)]


def through_gateway(environment: dict[str, str], files: list[Path]) -> dict[str, Any]:
    """Start a gateway on a fresh spool, send it ``files``, wait until the cloud's verdict
    on their study is in, stop it (SIGTERM); the study's ``gateway status`` entry."""
    LOGS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as spool, \
            (LOGS / "gateway.log").open("w") as log:
        gateway = subprocess.Popen(
            [str(COMMAND), "gateway", "serve", "--spool", spool, "--ae-title", GATEWAY_AE,
             "--port", str(port), "--stable-seconds", "1"],
            env={**os.environ, **environment}, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):  # until it listens
                if "listening on" in (LOGS / "gateway.log").read_text():
                    break
                time.sleep(0.1)
            subprocess.run(sender(port, files), check=True, capture_output=True,
                           env={**os.environ, "TCP_NODELAY": "1"})
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                [entry] = study_entries(Path(spool))
                if entry["stage"] == "done":
                    return entry
                time.sleep(0.5)
            raise TimeoutError(f"the gateway's study is still {entry['stage']}")
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)


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


def print_study(title: str, paths: list[Path], study_id: str, status: dict[str, Any],
                api_base: str, store: str) -> bool:
    """What one study became; whether it is STORED."""
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
        return False
    metadata = json.loads(request("GET", status["links"]["metadata"]).body)
    print(f"  metadata.json (through its presigned link, {len(status['links']['previews'])}"
          f" series preview link(s) beside it):")
    print_metadata(metadata)
    print(f"  stored under s3://{store}/studies/{study_id}/ — look with:")
    print(f"    awslocal s3 ls s3://{store}/studies/{study_id}/ --recursive")
    print(f"    awslocal s3 cp s3://{store}/studies/{study_id}/metadata.json -")
    print(f"    curl -s -H \"Authorization: Bearer $PACS_VALIDATOR_TOKEN\" "
          f"'{api_base}/status/{study_id}?limit=5'")
    return True


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
    gateway_files = sorted(p for p in (CORPUS / "dicomdirtests" / "98892001").rglob("*")
                           if p.is_file())
    entry = timed_step("gateway", lambda: through_gateway(environment, gateway_files))
    studies[GATEWAY_STUDY] = gateway_files
    study_ids[GATEWAY_STUDY] = str(entry["study_id"])
    statuses[GATEWAY_STUDY] = client.status(str(entry["study_id"])).json()
    print(f"\nAPI: {api_base}")
    stored = [print_study(title, paths, study_ids[title], statuses[title], api_base, store)
              for title, paths in studies.items()]
    print(f"\n{GATEWAY_STUDY}: {entry['received']} instance(s) accepted by the gateway, "
          f"{len(entry['refused'])} refused, {entry['uploaded']} uploaded; its log is "
          f"{(LOGS / 'gateway.log').relative_to(HERE.parent)}")
    print(f"\nupload page: {api_base}/ (paste $PACS_VALIDATOR_TOKEN into its token field)")
    print("\n(awslocal is in .local/venvs/localstack/bin; `eval \"$(local-runtime/stack env)\"` "
          "points plain aws/boto3 at LocalStack and sets PACS_VALIDATOR_API and "
          "PACS_VALIDATOR_TOKEN; `make down` stops it.)")
    return 0 if all(stored) else 1


if __name__ == "__main__":
    sys.exit(main())
