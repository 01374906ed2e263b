"""``pacs-validator list`` and ``status <StudyInstanceUID>`` against the stack deployed on
LocalStack: a study uploaded is listed first among its owner's and found by its UID
(``GET /studies`` on the owner index)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
import pytest
from conftest import Deployment
from pydicom.uid import generate_uid
from test_upload_cli import CORPUS, pacs_validator

from pacs_validator.transfer.client import PacsClient

pytestmark = pytest.mark.e2e


def test_an_uploaded_study_is_listed_first_and_found_by_its_uid(
        deployment: Deployment, two_sites: dict[str, PacsClient], tmp_path: Path) -> None:
    site = two_sites["site-a"]
    dataset = pydicom.dcmread(CORPUS / "CT_small.dcm")
    uid = generate_uid()  # this study's alone, whatever else the stack holds
    dataset.StudyInstanceUID = uid
    (tmp_path / "exam").mkdir()
    dataset.save_as(tmp_path / "exam" / "ct.dcm")
    uploaded = pacs_validator(deployment, tmp_path, "upload", "exam", "--json", as_caller=site)
    assert uploaded.returncode == 0, uploaded.stderr
    study_id = json.loads(uploaded.stdout)[0]["study_id"]

    listed = pacs_validator(deployment, tmp_path, "list", "--limit", "3", as_caller=site)
    assert listed.returncode == 0, listed.stderr
    first = listed.stdout.splitlines()[0]  # newest first: only this test declares as site-a now
    assert first.split()[:4] == [study_id, uid, "STORED", "200"]
    assert re.match(r"^\d+ stud(y|ies): \d+ ", listed.stdout.splitlines()[-1])

    found = pacs_validator(deployment, tmp_path, "status", uid, "--json", as_caller=site)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["study_id"] == study_id

    missing = pacs_validator(deployment, tmp_path, "status", generate_uid(), as_caller=site)
    assert missing.returncode == 1 and "hint:" in missing.stderr
