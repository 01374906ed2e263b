"""``pacs-validator upload`` and ``status``, the installed command run as a user runs it,
against the stack deployed on LocalStack: a folder of studies to their verdicts, an
interrupted upload resumed, a rejected study's findings."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from conftest import Deployment
from corpus_studies import reidentified_study

from pacs_validator.transfer.client import PacsClient, studies_in

pytestmark = pytest.mark.e2e
COMMAND = Path(sys.executable).with_name("pacs-validator")
CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
RUN_TIMEOUT = 600


def environment(deployment: Deployment, as_caller: PacsClient | None = None) -> dict[str, str]:
    """The variables ``eval "$(local-runtime/stack env)"`` gives a user (with the token of
    ``as_caller``, another label, when given)."""
    caller = as_caller or deployment.api
    return {**os.environ, "PACS_VALIDATOR_API": deployment.api.api_base,
            "PACS_VALIDATOR_TOKEN": caller.token or ""}


def pacs_validator(deployment: Deployment, folder: Path, *args: str,
                   as_caller: PacsClient | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMMAND), *args], cwd=folder,
                          env=environment(deployment, as_caller), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, check=False)


def test_a_folder_of_two_studies_is_stored_and_exits_0(deployment: Deployment,
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    mr = max(studies_in(CORPUS / "dicomdirtests" / "98892003").values(), key=len)
    for path in mr:
        (folder / "mr" / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / "mr" / path.parent.name / path.name)
    shutil.copyfile(CORPUS / "CT_small.dcm", folder / "ct.dcm")
    (folder / "README.txt").write_text("not DICOM")

    done = pacs_validator(deployment, tmp_path, "upload", "exam", "--json")

    assert done.returncode == 0, done.stderr
    documents = json.loads(done.stdout)
    assert [d["state"] for d in documents] == ["STORED", "STORED"]
    assert sorted(d["counts"]["received"] for d in documents) == [1, len(mr)]
    assert "SKIPPED exam/README.txt: a text file, not DICOM: not judged" in done.stderr
    assert "all 2 study(ies): 12/12 files" in done.stderr  # plain progress: not a terminal
    for document in documents:
        stored = deployment.keys(deployment.store_bucket, f"studies/{document['study_id']}/")
        assert f"studies/{document['study_id']}/metadata.json" in stored

    status = pacs_validator(deployment, tmp_path, "status", documents[0]["study_id"])
    assert status.returncode == 0
    assert status.stdout.startswith(f"STORED     200 {documents[0]['study_id']}")


def test_an_interrupted_upload_resumes_the_same_study(deployment: Deployment,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "large"
    folder.mkdir()
    files = dict(reidentified_study(200, series=3, seed=f"resume-{time.time()}"))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    # SIGINT as a terminal sends it: a test run started in the background (``make test &``)
    # hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt.
    first = subprocess.Popen([str(COMMAND), "upload", "large", "--jobs", "2"], cwd=tmp_path,
                             env=environment(deployment), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state_file = tmp_path / ".pacs-validator-upload.json"
    # interrupted on its own progress, a quarter of the files sent: the pipeline's count of
    # received files lags behind, and by the time it reached a threshold every file could be
    # sent already (the kept upload then gone, nothing to resume)
    assert first.stdout is not None
    for line in first.stdout:
        if f"{len(files) // 4}/{len(files)} files" in line:
            break
    else:
        pytest.fail("the upload ended before it could be interrupted")
    first.send_signal(signal.SIGINT)
    _, errors = first.communicate(timeout=60)

    assert first.returncode == 1
    assert "run the same command again to resume" in errors
    study_id = next(iter(json.loads(state_file.read_text())["uploads"].values()))["study_id"]
    received = deployment.api.status(study_id, limit=1).json()["counts"]["received"]
    assert received < len(files)

    second = pacs_validator(deployment, tmp_path, "upload", "large", "--json")

    assert second.returncode == 0, second.stderr
    [document] = json.loads(second.stdout)
    assert document["study_id"] == study_id, second.stderr
    assert document["state"] == "STORED"
    assert document["counts"]["received"] == len(files)
    resumed = re.search(r"resuming study (\w+): (\d+) of (\d+) file\(s\) already received",
                        second.stderr)
    assert resumed is not None, second.stderr
    assert resumed.group(1) == study_id and int(resumed.group(3)) == len(files)
    assert int(resumed.group(2)) >= received
    assert not state_file.exists()


def test_a_five_study_upload_interrupted_after_two_stores_each_study_once(
        deployment: Deployment, tmp_path: Path) -> None:
    folder = tmp_path / "five"
    seed = f"five-{time.time()}"
    uids = []
    for number in range(1, 6):
        (folder / f"study-{number}").mkdir(parents=True)
        for name, data in reidentified_study(20, series=2, seed=f"{seed}-{number}"):
            (folder / f"study-{number}" / name).write_bytes(data)
        uids.append(str(pydicom.dcmread(folder / f"study-{number}" / name).StudyInstanceUID))
    first = subprocess.Popen([str(COMMAND), "upload", "five", "--jobs", "2"], cwd=tmp_path,
                             env=environment(deployment), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert first.stdout is not None
    for line in first.stdout:  # plain progress: each study's first line as it starts
        if line.startswith("study 3/5"):
            break
    else:
        pytest.fail("the upload ended before its third study")
    first.send_signal(signal.SIGINT)
    _, errors = first.communicate(timeout=60)
    assert first.returncode == 1
    assert "run the same command again to resume" in errors
    kept = json.loads((tmp_path / ".pacs-validator-upload.json").read_text())["uploads"]
    assert len(kept) == 3  # the two sent and the one interrupted

    second = pacs_validator(deployment, tmp_path, "upload", "five", "--json")

    assert second.returncode == 0, second.stderr
    documents = json.loads(second.stdout)
    assert [d["state"] for d in documents] == ["STORED"] * 5
    study_ids = {d["study_id"] for d in documents}
    assert {entry["study_id"] for entry in kept.values()} <= study_ids
    assert "5 studies: 5 STORED" in second.stderr
    stored = [json.loads(deployment.read(deployment.store_bucket, key))
              for key in deployment.keys(deployment.store_bucket, "studies/")
              if key.endswith("/metadata.json")]
    ours = [m["study_id"] for m in stored if m["study"]["instance_uid"] in uids]
    assert sorted(ours) == sorted(study_ids)


def test_a_rejected_study_prints_its_findings_and_exits_1(deployment: Deployment,
                                                          tmp_path: Path) -> None:
    dataset = pydicom.dcmread(CORPUS / "CT_small.dcm")
    del dataset.PatientID
    dataset.save_as(tmp_path / "no-patient-id.dcm")

    done = pacs_validator(deployment, tmp_path, "upload", "no-patient-id.dcm")

    assert done.returncode == 1, done.stderr
    verdict = re.search(r"^REJECTED   422 (\w+)", done.stdout, re.MULTILINE)
    assert verdict is not None, done.stdout
    assert re.search(r"no-patient-id\.dcm: error\s+attribute\.required\s+\(0010,\s?0020\)",
                     done.stdout), done.stdout
    status = pacs_validator(deployment, tmp_path, "status", verdict.group(1))
    assert status.returncode == 1
