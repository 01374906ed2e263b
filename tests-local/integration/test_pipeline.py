"""The whole pipeline, handler by handler, on moto: upload -> validate -> store."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pydicom
import pytest
import realworld
from conftest import STORE, UPLOADS, FakeContext, Stack, api_event, s3_put_event
from pydicom.data import get_testdata_file

from pacs_validator.contract.keys import incoming_prefix
from pacs_validator.transfer.client import studies_in

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"


MR_STUDY = max(studies_in(CORPUS / "dicomdirtests" / "98892003").values(), key=len)


def call_api(stack: Stack, method: str, path: str, body: Any = None,
             params: dict[str, str] | None = None,
             query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    response = stack.handler("api").lambda_handler(
        api_event(method, path, body, params, query=query), FakeContext()
    )
    return response["statusCode"], json.loads(response["body"])


def deliver_upload(stack: Stack, key: str, data: bytes, sequencer: str = "0A") -> dict[str, Any]:
    version = stack.s3.put_object(Bucket=UPLOADS, Key=key, Body=data)["VersionId"]
    result: dict[str, Any] = stack.handler("validator").lambda_handler(
        s3_put_event(UPLOADS, key, sequencer, len(data), version), FakeContext()
    )
    return result


def deliver_success_events(stack: Stack) -> None:
    """Run the descriptor as EventBridge and Lambda would: on each new validation.success
    event, then on each chunk event handed out, until no work is left."""
    delivered = {e["id"] for e in stack.seen if e["detail-type"] == "validation.success"}
    while True:
        successes = [e for e in stack.published() if e["detail-type"] == "validation.success"
                     and e["id"] not in delivered]
        if not successes and not stack.chunk_events:
            return
        for event in successes:
            delivered.add(event["id"])
            stack.handler("descriptor").lambda_handler(event, FakeContext())
        while stack.chunk_events:
            event = stack.chunk_events.pop(0)
            worker = "descriptor" if event["work"] == "store" else "validator"
            stack.handler(worker).lambda_handler(event, FakeContext())


def declare_study(stack: Stack, files: dict[str, bytes]) -> dict[str, Any]:
    status, body = call_api(stack, "POST", "/upload",
                            {"files": [{"name": n, "size": len(d)} for n, d in files.items()]})
    assert status == 201, body
    return body


def run_study(stack: Stack, files: dict[str, bytes]) -> str:
    """POST /upload, put every file where its form puts it (the study's prefix + name), run
    the functions."""
    body = declare_study(stack, files)
    for name, data in files.items():
        deliver_upload(stack, incoming_prefix(body["study_id"]) + name, data)
    deliver_success_events(stack)
    return str(body["study_id"])


def study_status(stack: Stack, study_id: str) -> dict[str, Any]:
    status, body = call_api(stack, "GET", f"/status/{study_id}", params={"study_id": study_id})
    assert status == 200, body
    return body


def detail_types(stack: Stack, study_id: str) -> list[str]:
    return [e["detail-type"] for e in stack.published() if e["detail"]["study_id"] == study_id]


def test_one_file_study_is_stored_as_original_with_metadata(stack: Stack) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    study_id = run_study(stack, {"ct.dcm": data})

    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert status["status"] == 200
    prefix = f"studies/{study_id}/"
    assert stack.keys(STORE, prefix) == sorted(
        prefix + leaf for leaf in
        ("original.dcm", "metadata.json", "dicom.json", "validation.log", "validation.json",
         f"previews/{pydicom.dcmread(get_testdata_file('CT_small.dcm')).SeriesInstanceUID}.png")
    )
    stored = stack.s3.get_object(Bucket=STORE, Key=prefix + "original.dcm")["Body"].read()
    assert stored == data
    metadata_object = stack.s3.get_object(Bucket=STORE, Key=prefix + "metadata.json")
    metadata = json.loads(metadata_object["Body"].read())
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert metadata["study_id"] == study_id
    assert metadata["patient"]["id"] == dataset.PatientID
    assert metadata["study"]["instance_uid"] == dataset.StudyInstanceUID
    instance = metadata["series"][0]["instances"][0]
    assert instance["sha256"] == hashlib.sha256(data).hexdigest()
    assert instance["key"] == prefix + "original.dcm"
    preview = metadata["series"][0]["preview"]
    assert preview == f"{prefix}previews/{dataset.SeriesInstanceUID}.png"
    png = stack.s3.get_object(Bucket=STORE, Key=preview)["Body"].read()
    assert png.startswith(b"\x89PNG")
    assert detail_types(stack, study_id) == [
        "study.uploaded", "validation.success", "study.validated",
        "metadata.extracted", "storage.completed", "study.processed",
    ]


def test_multi_file_study_is_stored_by_sop_instance_uid(stack: Stack) -> None:
    files = {f"{path.parent.name}-{path.name}.dcm": path.read_bytes() for path in MR_STUDY}
    study_id = run_study(stack, files)

    assert study_status(stack, study_id)["state"] == "STORED"
    uids = {str(pydicom.dcmread(path).SOPInstanceUID) for path in MR_STUDY}
    instance_keys = stack.keys(STORE, f"studies/{study_id}/instances/")
    assert instance_keys == sorted(f"studies/{study_id}/instances/{uid}.dcm" for uid in uids)
    metadata = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/metadata.json")["Body"].read())
    assert metadata["counts"]["instances"] == len(MR_STUDY)
    uploaded = detail_types(stack, study_id).count("study.uploaded")
    assert uploaded == len(MR_STUDY)


@pytest.mark.parametrize(
    ("name", "expected_status", "rule"),
    [
        ("no_meta.dcm", 400, "format.preamble"),
        ("MR_truncated.dcm", 400, "format.truncated"),
        ("JPEGLSNearLossless_08.dcm", 422, "attribute.required"),
    ],
)
def test_rejected_file_lands_in_rejected_with_its_findings(
    stack: Stack, name: str, expected_status: int, rule: str
) -> None:
    data = Path(get_testdata_file(name)).read_bytes()
    study_id = run_study(stack, {name: data})

    status = study_status(stack, study_id)
    assert status["state"] == "REJECTED"
    assert status["status"] == expected_status
    assert rule in {f["rule"] for f in status["files"][0]["findings"]}
    kept = (name,) if expected_status == 422 else ()  # a file that is not DICOM is not kept
    assert stack.keys(STORE, f"rejected/{study_id}/") == sorted(
        f"rejected/{study_id}/{leaf}" for leaf in (*kept, "validation.log", "validation.json")
    )
    assert stack.keys(STORE, f"studies/{study_id}/") == []
    original = stack.s3.get_object(Bucket=UPLOADS, Key=f"incoming/{study_id}/{name}")
    assert original["Body"].read() == data
    log = stack.s3.get_object(Bucket=STORE, Key=f"rejected/{study_id}/validation.log")
    assert rule in log["Body"].read().decode()
    types = detail_types(stack, study_id)
    assert types == ["study.uploaded", "validation.failed", "study.validated"]


def test_a_rejected_study_keeps_only_its_declared_readable_dicom_files(stack: Stack) -> None:
    valid = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    invalid = Path(get_testdata_file("JPEGLSNearLossless_08.dcm")).read_bytes()  # 422
    junk = random.Random(31).randbytes(4 * 1024 * 1024)
    declared = {"ct.dcm": len(valid), "jls.dcm": len(invalid), "small.dcm": 10,
                "noise.dcm": 4096}
    status, body = call_api(stack, "POST", "/upload",
                            {"files": [{"name": n, "size": s} for n, s in declared.items()]})
    assert status == 201, body
    sent = {"ct.dcm": valid, "jls.dcm": invalid, "small.dcm": junk, "noise.dcm": junk[:4096]}
    for name, data in sent.items():  # the study-wide form lets any of them through
        deliver_upload(stack, incoming_prefix(body["study_id"]) + name, data)
    study_id = body["study_id"]

    status_of = study_status(stack, study_id)
    assert status_of["state"] == "REJECTED"
    assert {"size.declared", "attribute.required"} <= {f["rule"] for f in status_of["findings"]}\
        | {f["rule"] for file in status_of["files"] for f in file["findings"]}
    prefix = f"rejected/{study_id}/"
    assert stack.keys(STORE, prefix) == sorted(
        prefix + leaf for leaf in ("ct.dcm", "jls.dcm", "validation.log", "validation.json"))
    log = stack.s3.get_object(Bucket=STORE, Key=prefix + "validation.log")["Body"].read()
    assert b"file small.dcm: INVALID" in log and b"file noise.dcm: INVALID 400" in log
    assert stack.s3.get_object(Bucket=UPLOADS, Key=incoming_prefix(body["study_id"]) + "small.dcm")[
        "Body"].read() == junk  # left where it was sent, to expire with incoming/


def test_files_of_two_studies_in_one_upload_are_rejected_as_mixed(stack: Stack) -> None:
    files = {
        "ct.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes(),
        "mr.dcm": Path(get_testdata_file("MR_small.dcm")).read_bytes(),
    }
    study_id = run_study(stack, files)

    status = study_status(stack, study_id)
    assert status["state"] == "REJECTED"
    assert status["status"] == 422
    assert "study.mixed-studies" in {f["rule"] for f in status["findings"]}
    assert all(f["status"] == 200 for f in status["files"])


def test_stored_study_has_a_dicom_json_sidecar_pointing_at_stored_instances(
    stack: Stack,
) -> None:
    files = {f"{path.parent.name}-{path.name}.dcm": path.read_bytes() for path in MR_STUDY}
    study_id = run_study(stack, files)

    sidecar = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/dicom.json")["Body"].read())
    assert len(sidecar) == len(MR_STUDY)
    stored = set(stack.keys(STORE, f"studies/{study_id}/instances/"))
    for instance in sidecar:
        uri = instance["7FE00010"]["BulkDataURI"]
        key, _, tag = uri.partition("#")
        assert key in stored
        assert tag == "7FE00010"
        dataset = pydicom.Dataset.from_json(
            {k: v for k, v in instance.items() if "BulkDataURI" not in v})
        assert key.endswith(f"/{dataset.SOPInstanceUID}.dcm")


def descriptor_reads(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments of every GetObject the descriptor makes from now on."""
    client = stack.handler("descriptor").pipeline.services.uploads.client  # type: ignore[attr-defined]
    get_object = client.get_object
    reads: list[dict[str, Any]] = []

    def recorded(**kwargs: Any) -> Any:
        reads.append(kwargs)
        return get_object(**kwargs)

    monkeypatch.setattr(client, "get_object", recorded)
    return reads


def test_storing_reads_each_instance_once_and_a_one_chunk_study_leaves_no_patient_value(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The descriptor reads each instance once, from the version validated: its head, in
    a ranged read ending before its pixel data, or the whole of it when it is its series'
    preview (described and rendered from that one read). What a study of one chunk leaves
    under ``work/`` (reports, its chunk) holds none of its patient values."""
    files = {f"{path.parent.name}-{path.name}.dcm": path.read_bytes() for path in MR_STUDY}
    reads = descriptor_reads(stack, monkeypatch)
    study_id = run_study(stack, files)

    assert study_status(stack, study_id)["state"] == "STORED"
    instances = [read for read in reads if read["Key"].startswith("incoming/")]
    assert sorted(read["Key"].rpartition("/")[2] for read in instances) == sorted(files)
    assert all(read["VersionId"] for read in instances)
    whole = [read for read in instances if "Range" not in read]
    metadata = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/metadata.json")["Body"].read())
    assert len(whole) == len(metadata["series"]) > 1
    assert all(series["preview"] for series in metadata["series"])
    for read in instances:
        if read in whole:
            continue
        data = files[read["Key"].rpartition("/")[2]]
        last = int(read["Range"].removeprefix("bytes=0-"))
        assert last + 1 <= data.index(b"\xe0\x7f\x10\x00") + 12 < len(data)
    patient = pydicom.dcmread(MR_STUDY[0], stop_before_pixels=True)
    values = [str(patient.PatientID).encode(), str(patient.PatientName).encode()]
    work = stack.keys(UPLOADS, f"work/{study_id}/")
    assert work
    for key in work:
        body = stack.s3.get_object(Bucket=UPLOADS, Key=key)["Body"].read()
        assert not [value for value in values if value in body], key


def test_an_instance_without_pixel_data_is_read_by_its_head_alone_and_has_no_preview(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A structured report (highdicom's, with trailing zero padding) is its series' middle
    instance, but it has no pixel data to preview: storing reads its head once, which
    stops before the padding, and renders nothing."""
    report = realworld.structured_report(realworld.ct_series(tmp_path), tmp_path / "sr.dcm",
                                         False)
    padded = realworld.with_zero_padding(report, tmp_path / "padded.dcm", 4096)
    reads = descriptor_reads(stack, monkeypatch)
    study_id = run_study(stack, {"report.dcm": padded.read_bytes()})

    assert study_status(stack, study_id)["state"] == "STORED"
    instances = [read for read in reads if read["Key"].startswith("incoming/")]
    assert [read["Range"] for read in instances] == [f"bytes=0-{report.stat().st_size - 1}"]
    metadata = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/metadata.json")["Body"].read())
    assert [series["preview"] for series in metadata["series"]] == [None]
    assert stack.keys(STORE, f"studies/{study_id}/previews/") == []


def test_a_deflated_instance_is_described_from_the_whole_file_and_stored_beside_another(
    stack: Stack, tmp_path: Path
) -> None:
    """A deflated data set has no head to read alone: its instance is read whole when the
    study is stored, and described as the plain one beside it is."""
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ct.InstanceNumber = 2
    ct.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ct.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    files = {"plain.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes(),
             "deflated.dcm": (tmp_path / "deflated.dcm").read_bytes()}
    study_id = run_study(stack, files)

    assert study_status(stack, study_id)["state"] == "STORED"
    metadata = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/metadata.json")["Body"].read())
    instances = metadata["series"][0]["instances"]
    assert [i["transfer_syntax"] for i in instances] == [
        pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.DeflatedExplicitVRLittleEndian]
    assert [(i["rows"], i["columns"]) for i in instances] == [(128, 128), (128, 128)]
    sidecar = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/dicom.json")["Body"].read())
    assert {d["00100020"]["Value"][0] for d in sidecar} == {str(ct.PatientID)}
    assert {d["00080018"]["Value"][0] for d in sidecar} == {i["sop_instance_uid"]
                                                           for i in instances}


def test_the_validator_reads_a_study_s_manifest_once_for_its_arrivals_and_judgment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {path.name: path.read_bytes() for path in MR_STUDY[:3]}
    body = declare_study(stack, files)
    client = stack.handler("validator").pipeline.services.uploads.client  # type: ignore[attr-defined]
    get_object = client.get_object
    keys: list[str] = []

    def counted(**kwargs: Any) -> Any:
        keys.append(kwargs["Key"])
        return get_object(**kwargs)

    monkeypatch.setattr(client, "get_object", counted)
    for name, data in files.items():
        deliver_upload(stack, incoming_prefix(body["study_id"]) + name, data)
    assert study_status(stack, str(body["study_id"]))["state"] == "VALID"
    assert keys.count(f"manifests/{body['study_id']}.json") == 1
