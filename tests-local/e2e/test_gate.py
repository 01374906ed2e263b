"""The gate on LocalStack: what is stored is what was validated, whatever a client posts
through its form after the study was judged."""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Deployment
from corpus_studies import reidentified_study
from pydicom.data import get_testdata_file

from pacs_validator.transfer.client import ApiError, PacsClient

pytestmark = pytest.mark.e2e

OPEN = ("AWAITING_UPLOAD", "RECEIVING")
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def test_a_file_swapped_after_judgment_leaves_a_300_file_study_stored_as_validated(
        deployment: Deployment) -> None:
    api = deployment.api
    files = dict(reidentified_study(300, seed=f"gate-{uuid.uuid4().hex}"))
    declared = api.declare({name: len(data) for name, data in files.items()})
    study_id, forms = declared["study_id"], api.all_forms(declared, list(files))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda name: api.send_file(forms[name], name, files[name]), files))
    state = "AWAITING_UPLOAD"
    deadline = time.monotonic() + 300
    while state in OPEN and time.monotonic() < deadline:
        time.sleep(0.2)  # not a busy loop: LocalStack serves the pipeline on the same cores
        state = api.status(study_id, limit=1).json()["state"]
    assert state in ("VALIDATING", "VALID"), f"the swap must come before STORED, not {state}"

    swapped = sorted(files)[1]
    junk = (b"NOT A DICOM FILE" * len(files[swapped]))[:len(files[swapped])]
    api.send_file(forms[swapped], swapped, junk)  # the same form, other bytes of its size
    after_swap = api.status(study_id, limit=1).json()["state"]
    assert after_swap in ("VALIDATING", "VALID"), "the swap landed before the study was stored"
    status = api.wait(study_id, timeout=600)
    deadline = time.monotonic() + 60
    while "late" not in status["counts"] and time.monotonic() < deadline:
        time.sleep(0.5)  # the swap's own notification may come after STORED
        status = api.status(study_id, limit=1).json()

    assert (status["state"], status["status"]) == ("STORED", 200), status["findings"]
    assert status["counts"]["late"] == 1
    [aside] = status["kept_aside"]
    assert (aside["name"], aside["outcome"], aside["last"]["status"]) == (swapped, "late", 400)

    metadata = json.loads(deployment.read(deployment.store_bucket,
                                          f"studies/{study_id}/metadata.json"))
    assert metadata["counts"] == {"series": 4, "instances": 300}
    recorded = {instance["key"]: instance["sha256"]
                for series in metadata["series"] for instance in series["instances"]}
    assert len(recorded) == 300
    assert len(deployment.keys(deployment.store_bucket, f"studies/{study_id}/instances/")) == 300
    uploaded = {hashlib.sha256(data).hexdigest() for data in files.values()}
    for key, sha256 in recorded.items():
        assert hashlib.sha256(deployment.read(deployment.store_bucket, key)).hexdigest() \
            == sha256
    assert set(recorded.values()) == uploaded
    names: list[str] = []
    token = None
    while True:  # every file's verdict, page by page
        page = api.status(study_id, limit=120, next_token=token).json()
        names.extend(f["name"] for f in page["files"])
        token = page["next"]
        if token is None:
            break
    assert names == sorted(files)
    events = deployment.events_for(study_id, until="study.processed")
    assert max(len(json.dumps(e)) for e in events) < 32 * 1024
    assert [e["detail-type"] for e in events].count("validation.success") == 1


def test_each_label_sees_only_its_own_studies_and_the_admin_sees_all(
        deployment: Deployment, two_sites: dict[str, PacsClient]) -> None:
    data = CT_SMALL.read_bytes()
    site_a, site_b, admin = two_sites["site-a"], two_sites["site-b"], two_sites["admin"]
    study_a = site_a.declare({"a.dcm": len(data)})["study_id"]
    study_b = site_b.declare({"b.dcm": len(data)})["study_id"]

    assert site_b.status(study_a).status == 404
    assert site_a.status(study_b).status == 404
    for caller, study, name in ((site_b, study_a, "a.dcm"), (site_a, study_b, "b.dcm")):
        with pytest.raises(ApiError) as refused:
            caller.forms(study, [name])
        assert refused.value.status == 404
    assert site_a.status(study_a).json()["state"] == "AWAITING_UPLOAD"
    assert admin.status(study_a).status == admin.status(study_b).status == 200
    assert admin.forms(study_b, ["b.dcm"])["study_id"] == study_b

    site_a.send_file(site_a.forms(study_a, ["a.dcm"])["uploads"][0], "a.dcm", data)
    assert site_a.wait(study_a)["state"] == "STORED"
    events = deployment.events_for(study_a, until="study.processed")
    assert {e["detail"]["owner"] for e in events} == {"site-a"}



def test_a_rejected_study_sent_junk_keeps_only_its_declared_readable_dicom(
        deployment: Deployment) -> None:
    api = deployment.api
    valid = CT_SMALL.read_bytes()
    invalid = Path(get_testdata_file("JPEGLSNearLossless_08.dcm")).read_bytes()  # 422
    junk = random.Random(31).randbytes(4 * 1024 * 1024)
    declared = api.declare({"ct.dcm": len(valid), "jls.dcm": len(invalid), "small.dcm": 10,
                            "noise.dcm": 4096})
    study_id = declared["study_id"]
    forms = {form["name"]: form for form in declared["uploads"]}
    refused = PacsClient.post_file(forms["small.dcm"], "small.dcm", junk)
    assert refused.status == 400 and b"EntityTooLarge" in refused.body
    sent = {"ct.dcm": valid, "jls.dcm": invalid, "small.dcm": junk[:10],
            "noise.dcm": junk[:4096]}
    for name, data in sent.items():  # each form lets in its declared size, whatever the bytes
        api.send_file(forms[name], name, data)
    status = api.wait(study_id, timeout=180)

    assert status["state"] == "REJECTED"
    prefix = f"rejected/{study_id}/"
    assert deployment.keys(deployment.store_bucket, prefix) == sorted(
        prefix + leaf for leaf in ("ct.dcm", "jls.dcm", "validation.log", "validation.json"))
    kept = sum(len(deployment.read(deployment.store_bucket, prefix + n))
               for n in ("ct.dcm", "jls.dcm"))
    assert kept == len(valid) + len(invalid)  # no more than the study declared
