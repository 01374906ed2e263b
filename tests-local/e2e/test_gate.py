"""The gate on LocalStack: what is stored is what was validated, whatever a client posts
through its form after the study was judged."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Deployment
from corpus_studies import reidentified_study

pytestmark = pytest.mark.e2e

OPEN = ("AWAITING_UPLOAD", "RECEIVING")


def test_a_file_swapped_after_judgment_leaves_a_300_file_study_stored_as_validated(
        deployment: Deployment) -> None:
    api = deployment.api
    files = dict(reidentified_study(300, seed=f"gate-{uuid.uuid4().hex}"))
    declared = api.declare({name: len(data) for name, data in files.items()})
    study_id, form = declared["study_id"], declared["upload"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda name: api.send_file(form, name, files[name]), files))
    state = "AWAITING_UPLOAD"
    deadline = time.monotonic() + 300
    while state in OPEN and time.monotonic() < deadline:
        state = api.status(study_id, limit=1).json()["state"]
    assert state in ("VALIDATING", "VALID"), f"the swap must come before STORED, not {state}"

    swapped = sorted(files)[1]
    api.send_file(form, swapped, b"NOT A DICOM FILE" * 64)  # the same form, another body
    status = api.wait(study_id, timeout=600)

    assert (status["state"], status["status"]) == ("STORED", 200), status["findings"]
    assert status["counts"]["late"] == 1
    [aside] = status["kept_aside"]
    assert (aside["name"], aside["outcome"], aside["last"]["status"]) == (swapped, "late", 400)
    stored_at = next(e["at"] for e in status["timeline"] if e["state"] == "STORED")
    assert aside["last"]["at"] < stored_at, "the swap landed while the study was being stored"

    metadata = json.loads(deployment.read(deployment.store_bucket,
                                          f"studies/{study_id}/metadata.json"))
    recorded = {instance["key"]: instance["sha256"]
                for series in metadata["series"] for instance in series["instances"]}
    assert len(recorded) == 300
    uploaded = {hashlib.sha256(data).hexdigest() for data in files.values()}
    for key, sha256 in recorded.items():
        assert hashlib.sha256(deployment.read(deployment.store_bucket, key)).hexdigest() \
            == sha256
    assert set(recorded.values()) == uploaded
