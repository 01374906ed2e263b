"""One study, stored once, on the stack deployed on LocalStack (DuplicatePolicy refuse, the
default): the same study uploaded again with ``pacs-validator upload`` answers with the
study id that holds it; the same SOPInstanceUID with other bytes is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Deployment
from corpus_studies import reidentified_study
from crafted import with_other_bytes
from test_upload_cli import pacs_validator

pytestmark = pytest.mark.e2e


def write_study(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)




def test_a_study_uploaded_twice_is_stored_once_under_the_existing_id(
        deployment: Deployment, tmp_path: Path) -> None:
    files = dict(reidentified_study(6, series=2, seed="sent twice"))
    write_study(tmp_path / "first", files)
    write_study(tmp_path / "again", files)

    first = pacs_validator(deployment, tmp_path, "upload", "first", "--json")
    again = pacs_validator(deployment, tmp_path, "upload", "again", "--json")

    assert (first.returncode, again.returncode) == (0, 0), again.stderr
    [stored], [acknowledged] = json.loads(first.stdout), json.loads(again.stdout)
    assert acknowledged["study_id"] != stored["study_id"]
    assert (acknowledged["state"], acknowledged["stored_as"]) == ("STORED", stored["study_id"])
    assert acknowledged["counts"]["acknowledged"] == len(files)
    assert acknowledged["keys"]["metadata"] == f"studies/{stored['study_id']}/metadata.json"
    assert deployment.keys(deployment.store_bucket, f"studies/{acknowledged['study_id']}/") == []
    instances = deployment.keys(deployment.store_bucket, f"studies/{stored['study_id']}/instances/")
    assert len(instances) == len(files)

    status = pacs_validator(deployment, tmp_path, "status", acknowledged["study_id"])
    assert f"stored already as study {stored['study_id']}" in status.stdout
    assert "instance.duplicate" in status.stdout


def test_the_same_sop_instance_uid_with_other_bytes_is_refused(
        deployment: Deployment) -> None:
    files = dict(reidentified_study(4, series=1, seed="other bytes"))
    first = deployment.api.wait(deployment.api.upload(files))
    name = sorted(files)[1]

    again_id = deployment.api.upload({**files, name: with_other_bytes(files[name])})
    again = deployment.api.wait(again_id)

    assert first["state"] == "STORED"
    assert (again["state"], again["status"]) == ("REJECTED", 422)
    [conflict] = [f for f in again["findings"] if f["rule"] == "instance.conflict"]
    assert conflict["message"] == (f"1 instance(s) have a SOPInstanceUID stored in study "
                                   f"{first['study_id']} with other bytes")
    [duplicate] = [f for f in again["findings"] if f["rule"] == "instance.duplicate"]
    assert duplicate["message"].startswith(f"{len(files) - 1} instance(s) identical")
    assert deployment.keys(deployment.store_bucket, f"studies/{again_id}/") == []
    stored = deployment.keys(deployment.store_bucket, f"studies/{first['study_id']}/instances/")
    assert len(stored) == len(files)
