"""The deployed application on LocalStack, driven like a user: HTTP API, presigned POSTs."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from conftest import Deployment, aws
from pydicom.data import get_testdata_file

from pacs_validator.contract.events import key_digest
from pacs_validator.transfer.client import (
    ApiError,
    PacsClient,
    multipart_form,
    read_files,
    request,
    studies_in,
)

pytestmark = pytest.mark.e2e

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
LIFECYCLE_STORED = ["study.uploaded", "validation.success", "study.validated",
                    "metadata.extracted", "storage.completed", "study.processed"]


def mr_study() -> list[Path]:
    """The largest real multi-file study of pydicom's dicomdirtests set."""
    return max(studies_in(CORPUS / "dicomdirtests" / "98892003").values(), key=len)


def test_one_file_study_is_stored_with_metadata_and_log(deployment: Deployment) -> None:
    study_id = deployment.api.upload({"ct.dcm": CT_SMALL.read_bytes()})
    status = deployment.api.wait(study_id)

    assert (status["state"], status["status"]) == ("STORED", 200)
    prefix = f"studies/{study_id}/"
    assert deployment.keys(deployment.store_bucket, prefix) == sorted(
        prefix + leaf for leaf in
        ("original.dcm", "metadata.json", "dicom.json", "validation.log", "validation.json",
         f"previews/{pydicom.dcmread(CT_SMALL).SeriesInstanceUID}.png"))
    assert deployment.read(deployment.store_bucket, prefix + "original.dcm") == \
        CT_SMALL.read_bytes()
    metadata = json.loads(deployment.read(deployment.store_bucket, prefix + "metadata.json"))
    dataset = pydicom.dcmread(CT_SMALL)
    assert metadata["patient"]["id"] == dataset.PatientID
    assert metadata["study"]["instance_uid"] == dataset.StudyInstanceUID
    instance = metadata["series"][0]["instances"][0]
    assert instance["sha256"] == hashlib.sha256(CT_SMALL.read_bytes()).hexdigest()
    assert instance["rows"] == dataset.Rows
    events = deployment.events_for(study_id, until="study.processed")
    assert [e["detail-type"] for e in events] == LIFECYCLE_STORED


def test_multi_file_study_is_stored_by_sop_instance_uid(deployment: Deployment) -> None:
    paths = mr_study()
    study_id = deployment.api.upload(read_files(paths))
    status = deployment.api.wait(study_id)

    assert status["state"] == "STORED", status
    uids = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths)
    prefix = f"studies/{study_id}/instances/"
    assert deployment.keys(deployment.store_bucket, prefix) == [f"{prefix}{u}.dcm" for u in uids]
    metadata = json.loads(deployment.read(deployment.store_bucket,
                                          f"studies/{study_id}/metadata.json"))
    assert metadata["counts"]["instances"] == len(paths)
    stored = sorted(i["sop_instance_uid"] for s in metadata["series"] for i in s["instances"])
    assert stored == uids
    types = [e["detail-type"] for e in deployment.events_for(study_id, until="study.processed")]
    assert types.count("study.uploaded") == len(paths)
    assert types[-4:] == ["study.validated", "metadata.extracted", "storage.completed",
                          "study.processed"]


@pytest.mark.parametrize(
    ("name", "status_code", "rule"),
    [("no_meta.dcm", 400, "format.preamble"),
     ("MR_truncated.dcm", 400, "format.truncated"),
     ("SC_jpeg_no_color_transform.dcm", 422, "attribute.required")],
)
def test_rejected_files_land_in_rejected_with_their_findings(
    deployment: Deployment, name: str, status_code: int, rule: str
) -> None:
    study_id = deployment.api.upload({name: Path(get_testdata_file(name)).read_bytes()})
    status = deployment.api.wait(study_id)

    assert (status["state"], status["status"]) == ("REJECTED", status_code)
    assert rule in {f["rule"] for f in status["files"][0]["findings"]}
    prefix = f"rejected/{study_id}/"
    kept = (name,) if status_code == 422 else ()  # a file that is not DICOM is not kept
    assert deployment.keys(deployment.store_bucket, prefix) == sorted(
        prefix + leaf for leaf in (*kept, "validation.log", "validation.json"))
    assert rule in deployment.read(deployment.store_bucket, prefix + "validation.log").decode()
    assert deployment.keys(deployment.store_bucket, f"studies/{study_id}/") == []
    types = [e["detail-type"] for e in deployment.events_for(study_id, until="study.validated")]
    assert types == ["study.uploaded", "validation.failed", "study.validated"]


def test_an_upload_larger_than_declared_is_refused_by_the_post_policy(
    deployment: Deployment,
) -> None:
    declared = deployment.api.declare({"ct.dcm": 1000})
    response = PacsClient.post_file(declared["uploads"][0], "ct.dcm", CT_SMALL.read_bytes())

    assert response.status == 400
    assert b"EntityTooLarge" in response.body
    assert deployment.keys(deployment.uploads_bucket, f"incoming/{declared['study_id']}/") == []
    status = deployment.api.status(declared["study_id"]).json()
    assert status["state"] == "AWAITING_UPLOAD"


def test_a_per_file_form_refuses_any_other_key_or_size(deployment: Deployment) -> None:
    size = CT_SMALL.stat().st_size
    declared = deployment.api.declare({"ct.dcm": size})
    [form] = declared["uploads"]
    elsewhere = {**form, "fields": {**form["fields"],
                                    "key": f"incoming/{declared['study_id']}/other.dcm"}}

    refused_key = PacsClient.post_file(elsewhere, "other.dcm", CT_SMALL.read_bytes())
    refused_size = PacsClient.post_file(form, "ct.dcm", CT_SMALL.read_bytes()[:size - 1])

    assert refused_key.status == 403, refused_key.body
    assert refused_size.status == 400 and b"EntityTooSmall" in refused_size.body
    assert deployment.keys(deployment.uploads_bucket, f"incoming/{declared['study_id']}/") == []


def test_no_study_wide_form_is_handed_out_by_default(deployment: Deployment) -> None:
    declared = deployment.api.declare({"ct.dcm": 1000, "other.dcm": 2000})
    assert "upload" not in declared
    assert [form["name"] for form in declared["uploads"]] == ["ct.dcm", "other.dcm"]

    api = deployment.api
    response = request("POST", f"{api.api_base}/upload/{declared['study_id']}", None,
                       {"Authorization": f"Bearer {api.token}"})

    assert response.status == 400
    assert "per-file forms only" in response.json()["message"]


def test_a_plain_s3_drop_is_processed_as_a_one_file_study(deployment: Deployment) -> None:
    key = f"incoming/drop-{uuid.uuid4().hex[:8]}.dcm"
    aws("s3").put_object(Bucket=deployment.uploads_bucket, Key=key, Body=CT_SMALL.read_bytes())

    secret = aws("secretsmanager").get_secret_value(
        SecretId=deployment.outputs["FingerprintKeySecretArn"])["SecretString"]
    digest = key_digest(key, secret.encode())  # what an operator holding the key can match
    deadline = time.monotonic() + 60
    study_id = None
    while study_id is None and time.monotonic() < deadline:
        deployment.events_for("", until="-", timeout=1)
        study_id = next((e["detail"]["study_id"] for e in deployment.seen
                         if e["detail"].get("key_digest") == digest), None)
    assert study_id, "the drop was announced with study.uploaded"
    assert deployment.api.wait(study_id)["state"] == "STORED"


def test_the_same_file_uploaded_twice_is_stored_once_and_noted(deployment: Deployment) -> None:
    data = CT_SMALL.read_bytes()
    study_id = deployment.api.upload({"first.dcm": data, "again.dcm": data})
    status = deployment.api.wait(study_id)

    assert status["state"] == "STORED"
    assert "study.duplicate-instance" in {f["rule"] for f in status["findings"]}
    assert deployment.keys(deployment.store_bucket, f"studies/{study_id}/original.dcm") == [
        f"studies/{study_id}/original.dcm"]


def test_status_answers_404_and_400_over_http(deployment: Deployment) -> None:
    assert deployment.api.status("0" * 32).status == 404
    assert deployment.api.status("not-an-id").status == 400


def test_forms_asked_for_by_name_take_the_rest_of_the_study_and_a_stored_one_is_409(
        deployment: Deployment) -> None:
    """POST /upload/{id} through API Gateway: forms asked for by name upload into the same
    study; once the study is STORED it takes no more files."""
    files = read_files(max(studies_in(CORPUS / "dicomdirtests" / "98892003").values(),
                           key=len))
    declared = deployment.api.declare({name: len(data) for name, data in files.items()})
    study_id = declared["study_id"]
    names = sorted(files)
    first = {form["name"]: form for form in declared["uploads"]}
    deployment.api.send_file(first[names[0]], names[0], files[names[0]])

    asked = deployment.api.forms(study_id, names[1:])

    assert asked["study_id"] == study_id and asked["files"] == len(files)
    assert [form["name"] for form in asked["uploads"]] == names[1:]
    for form in asked["uploads"]:
        deployment.api.send_file(form, form["name"], files[form["name"]])
    assert deployment.api.wait(study_id)["state"] == "STORED"
    with pytest.raises(ApiError) as refused:
        deployment.api.forms(study_id, names[:1])
    assert refused.value.status == 409 and "STORED" in refused.value.body
    with pytest.raises(ApiError) as unknown:
        deployment.api.forms("0" * 32, names[:1])
    assert unknown.value.status == 404


def function_log_text(group: str) -> str:
    """Every message in a log group ('' while the group does not exist yet)."""
    logs = aws("logs")
    try:
        pages = list(logs.get_paginator("filter_log_events").paginate(logGroupName=group))
    except logs.exceptions.ResourceNotFoundException:
        return ""
    return "\n".join(e["message"] for page in pages for e in page["events"])


def test_function_logs_carry_no_patient_value(deployment: Deployment, corpus) -> None:
    paths = [CT_SMALL, *mr_study()]
    rejected = deployment.api.upload(read_files(paths))  # two studies in one upload
    stored = [deployment.api.upload(read_files([CT_SMALL])),
              deployment.api.upload(read_files(mr_study()))]
    assert deployment.api.wait(rejected)["state"] == "REJECTED"
    assert {deployment.api.wait(study_id)["state"] for study_id in stored} == {"STORED"}
    values = corpus.whole_patient_values(paths)
    assert values
    groups = [aws("lambda").get_function_configuration(FunctionName=deployment.outputs[f])
              ["LoggingConfig"]["LogGroup"]
              for f in ("ApiFunctionName", "ValidatorFunctionName", "DescriptorFunctionName")]
    deadline = time.monotonic() + 60
    joined = ""
    while time.monotonic() < deadline:  # log delivery to CloudWatch is asynchronous
        joined = "\n".join(function_log_text(group) for group in groups)
        if "upload received" in joined and "study stored" in joined:
            break
        time.sleep(1)
    assert "upload received" in joined
    assert "study stored" in joined
    for value in values:
        assert value not in joined


def test_a_burst_of_50_concurrent_uploads_all_reach_a_terminal_state(
    deployment: Deployment,
) -> None:
    data = CT_SMALL.read_bytes()

    def one(index: int) -> dict[str, object]:
        study_id = deployment.api.upload({f"burst-{index}.dcm": data})
        return deployment.api.wait(study_id, timeout=300)

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(one, range(50)))
    assert len(statuses) == 50
    assert {s["state"] for s in statuses} == {"STORED"}


def test_anonymous_callers_are_refused_and_health_stays_open(deployment: Deployment) -> None:
    anonymous = PacsClient(deployment.api.api_base)
    refused = request("POST", f"{anonymous.api_base}/upload",
                      json.dumps({"filename": "a.dcm", "size": 1}).encode(),
                      {"Content-Type": "application/json"})
    assert refused.status == 401
    assert request("GET", f"{anonymous.api_base}/status/{'0' * 32}").status == 401
    wrong = request("GET", f"{anonymous.api_base}/status/{'0' * 32}",
                    headers={"Authorization": "Bearer not-a-token-we-handed-out"})
    assert wrong.status == 401
    assert request("GET", f"{anonymous.api_base}/health").status == 200


def test_the_checksum_s3_verified_is_recorded_and_a_wrong_one_is_refused(
    deployment: Deployment,
) -> None:
    data = CT_SMALL.read_bytes()
    [form] = deployment.api.declare({"ct.dcm": len(data)})["uploads"]
    fields = {**form["fields"],
              "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(b"x").digest()).decode()}
    head, tail, content_type = multipart_form(fields, "ct.dcm")
    refused = request("POST", form["url"], head + data + tail, {"Content-Type": content_type})
    assert refused.status == 400, refused.body

    study_id = deployment.api.upload({"ct.dcm": data})
    assert deployment.api.wait(study_id)["state"] == "STORED"
    report = json.loads(deployment.read(deployment.store_bucket,
                                        f"studies/{study_id}/validation.json"))
    assert report["files"][0]["checksum_sha256"] == \
        base64.b64encode(hashlib.sha256(data).digest()).decode()
