"""``pacs-validator list`` and ``status <StudyInstanceUID>`` against the stack deployed on
LocalStack: a study uploaded is found by its UID (``GET /studies`` on the new index)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
import pytest
from conftest import Deployment
from pydicom.uid import generate_uid
from test_upload_cli import CORPUS, pacs_validator

pytestmark = pytest.mark.e2e


def test_an_uploaded_study_is_listed_and_found_by_its_uid(deployment: Deployment,
                                                          tmp_path: Path) -> None:
    dataset = pydicom.dcmread(CORPUS / "CT_small.dcm")
    uid = generate_uid()  # this study's alone, whatever else the stack holds
    dataset.StudyInstanceUID = uid
    (tmp_path / "exam").mkdir()
    dataset.save_as(tmp_path / "exam" / "ct.dcm")
    uploaded = pacs_validator(deployment, tmp_path, "upload", "exam", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    study_id = json.loads(uploaded.stdout)[0]["study_id"]

    listed = pacs_validator(deployment, tmp_path, "list", "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(study_id))
    assert line.split()[1:4] == [uid, "STORED", "200"]
    assert re.match(r"^\d+ stud(y|ies): \d+ ", listed.stdout.splitlines()[-1])

    found = pacs_validator(deployment, tmp_path, "status", uid, "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["study_id"] == study_id

    missing = pacs_validator(deployment, tmp_path, "status", generate_uid())
    assert missing.returncode == 1 and "hint:" in missing.stderr
