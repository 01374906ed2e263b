"""What is stored is what was validated: uploads are pinned to the version that was read,
another upload of a name after judgment is kept aside, and an undeclared name is never
validated."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from conftest import STORE, UPLOADS, FakeContext, Stack, s3_put_event
from test_pipeline import (
    MR_STUDY,
    declare_study,
    deliver_success_events,
    deliver_upload,
    study_status,
)

from pacs_validator.contract.keys import incoming_prefix
from pacs_validator.dicom.config import build_config
from pacs_validator.dicom.data import data_document
from pacs_validator.flow.ports import CopyMismatch, SourceObject

NOT_DICOM = b"NOT A DICOM FILE" * 64


def mr_files(count: int) -> dict[str, bytes]:
    return {f"mr{index}.dcm": path.read_bytes() for index, path in enumerate(MR_STUDY[:count])}


def upload_all(stack: Stack, files: dict[str, bytes], sequencer: str = "0A") -> str:
    body = declare_study(stack, files)
    for name, data in files.items():
        deliver_upload(stack, incoming_prefix(body["study_id"]) + name, data, sequencer)
    return str(body["study_id"])


def file_records(stack: Stack, study_id: str) -> list[dict[str, Any]]:
    table = stack.handler("validator").pipeline.services.table
    return list(table.files(study_id))


def stored_digests(stack: Stack, study_id: str) -> dict[str, str]:
    """SHA-256 of every stored instance, by key."""
    prefix = f"studies/{study_id}/instances/"
    return {key: hashlib.sha256(stack.s3.get_object(Bucket=STORE, Key=key)["Body"].read())
            .hexdigest() for key in stack.keys(STORE, prefix)}


def metadata_digests(stack: Stack, study_id: str) -> dict[str, str]:
    metadata = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/metadata.json")["Body"].read())
    return {instance["key"]: instance["sha256"]
            for series in metadata["series"] for instance in series["instances"]}


def assert_stored_from(stack: Stack, study_id: str, files: dict[str, bytes]) -> None:
    """Every stored instance holds bytes of the first upload, as metadata.json says."""
    stored = stored_digests(stack, study_id)
    assert stored == metadata_digests(stack, study_id)
    assert sorted(stored.values()) == sorted(hashlib.sha256(d).hexdigest()
                                             for d in files.values())


def test_a_swap_between_judgment_and_copy_stores_the_judged_bytes(stack: Stack) -> None:
    files = mr_files(4)
    for handler in ("validator", "descriptor"):  # stored in chunks of 2, as large studies are
        stack.handler(handler).pipeline.services.chunk_instances = 2
    study_id = upload_all(stack, files)
    assert study_status(stack, study_id)["state"] == "VALID"
    records_before = file_records(stack, study_id)

    key = f"incoming/{study_id}/mr1.dcm"
    result = deliver_upload(stack, key, NOT_DICOM, sequencer="0B")  # the swap, judged already
    assert result["processed"][0]["outcome"] == "late"
    deliver_success_events(stack)

    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert_stored_from(stack, study_id, files)
    assert file_records(stack, study_id) == records_before
    assert status["counts"]["late"] == 1
    [aside] = status["kept_aside"]
    assert aside["name"] == "mr1.dcm" and aside["outcome"] == "late"
    assert aside["last"]["status"] == 400
    assert aside["finding"]["rule"] == "upload.replaced-after-judgment"


def test_a_swap_while_chunks_are_being_copied_changes_nothing_stored(stack: Stack) -> None:
    files = mr_files(4)
    for handler in ("validator", "descriptor"):
        stack.handler(handler).pipeline.services.chunk_instances = 2
    study_id = upload_all(stack, files)
    [success] = [e for e in stack.published() if e["detail-type"] == "validation.success"]
    stack.handler("descriptor").lambda_handler(success, FakeContext())
    assert len(stack.chunk_events) == 2  # the copy work handed out, not yet done

    for name in files:  # every file replaced while the chunks wait
        deliver_upload(stack, f"incoming/{study_id}/{name}", NOT_DICOM, sequencer="0C")
    deliver_success_events(stack)

    assert study_status(stack, study_id)["state"] == "STORED"
    assert_stored_from(stack, study_id, files)


def test_a_late_upload_leaves_a_stored_study_as_it_was(stack: Stack) -> None:
    files = mr_files(2)
    study_id = upload_all(stack, files)
    deliver_success_events(stack)
    assert study_status(stack, study_id)["state"] == "STORED"
    records_before = file_records(stack, study_id)
    stored_before = stored_digests(stack, study_id)
    status_before = study_status(stack, study_id)

    deliver_upload(stack, f"incoming/{study_id}/mr0.dcm", NOT_DICOM, sequencer="0B")
    deliver_upload(stack, f"incoming/{study_id}/mr0.dcm", files["mr1.dcm"], sequencer="0C")

    status = study_status(stack, study_id)
    assert file_records(stack, study_id) == records_before
    assert stored_digests(stack, study_id) == stored_before
    assert {k: status[k] for k in ("state", "status", "files")} == \
        {k: status_before[k] for k in ("state", "status", "files")}
    assert status["counts"]["late"] == 2
    [aside] = status["kept_aside"]
    assert aside["uploads"] == 2 and aside["last"]["status"] == 200


def test_an_undeclared_object_is_never_validated(stack: Stack,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    files = mr_files(2)
    body = declare_study(stack, files)
    study_id = body["study_id"]
    uploads = stack.handler("validator").pipeline.services.uploads
    downloaded = uploads.downloaded
    read: list[str] = []
    monkeypatch.setattr(uploads, "downloaded",
                        lambda key, version_id=None: read.append(key) or
                        downloaded(key, version_id))

    extra = deliver_upload(stack, incoming_prefix(body["study_id"]) + "extra.dcm", files["mr0.dcm"])
    assert extra["processed"][0] == {"study_id": study_id, "status": None,
                                     "outcome": "undeclared"}
    assert read == []
    for name, data in files.items():
        deliver_upload(stack, incoming_prefix(body["study_id"]) + name, data)
    deliver_success_events(stack)

    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert [f["name"] for f in status["files"]] == sorted(files)
    assert status["counts"]["undeclared"] == 1
    assert status["kept_aside"][0]["finding"]["rule"] == "upload.undeclared"
    uploaded = [e["detail"] for e in stack.published() if e["detail-type"] == "study.uploaded"]
    assert [d["outcome"] for d in uploaded] == ["undeclared", "counted", "counted"]
    assert [d["file_index"] for d in uploaded] == [None, 0, 1]


def test_a_replacement_before_judgment_is_judged_on_the_latest_bytes(stack: Stack) -> None:
    files = mr_files(2)
    body = declare_study(stack, files)
    study_id, prefix = body["study_id"], incoming_prefix(body["study_id"])
    assert deliver_upload(stack, prefix + "mr0.dcm", NOT_DICOM, "0A")["processed"][0][
        "status"] == 400
    replaced = deliver_upload(stack, prefix + "mr0.dcm", files["mr0.dcm"], "0B")
    assert replaced["processed"][0]["outcome"] == "replaced"
    deliver_upload(stack, prefix + "mr1.dcm", files["mr1.dcm"], "0A")
    deliver_success_events(stack)

    status = study_status(stack, study_id)
    assert status["state"] == "STORED" and status["counts"]["received"] == 2
    assert [f["replacements"] for f in status["files"]] == [1, 0]
    assert_stored_from(stack, study_id, files)


def test_an_earlier_upload_announced_after_a_later_one_changes_nothing(stack: Stack) -> None:
    files = mr_files(2)
    body = declare_study(stack, files)
    study_id, prefix = body["study_id"], incoming_prefix(body["study_id"])
    early = stack.s3.put_object(Bucket=UPLOADS, Key=prefix + "mr0.dcm", Body=NOT_DICOM)
    deliver_upload(stack, prefix + "mr0.dcm", files["mr0.dcm"], "0B")
    stale = stack.handler("validator").lambda_handler(
        s3_put_event(UPLOADS, prefix + "mr0.dcm", "0A", len(NOT_DICOM), early["VersionId"]),
        FakeContext())
    assert stale["processed"][0]["outcome"] == "stale"
    deliver_upload(stack, prefix + "mr1.dcm", files["mr1.dcm"], "0A")
    deliver_success_events(stack)

    assert study_status(stack, study_id)["state"] == "STORED"
    assert_stored_from(stack, study_id, files)


def test_a_copy_that_does_not_hold_the_validated_bytes_is_refused(stack: Stack) -> None:
    store = stack.handler("descriptor").pipeline.services.store
    put = stack.s3.put_object(Bucket=UPLOADS, Key="incoming/x.dcm", Body=b"validated")
    swapped = stack.s3.put_object(Bucket=UPLOADS, Key="incoming/x.dcm", Body=b"swapped!!")
    digest = hashlib.sha256(b"validated").hexdigest()

    store.copy_from(UPLOADS, SourceObject("incoming/x.dcm", 9, put["VersionId"], put["ETag"],
                                          digest), "studies/t/original.dcm")
    assert stack.s3.get_object(Bucket=STORE, Key="studies/t/original.dcm")["Body"].read() \
        == b"validated"
    with pytest.raises(CopyMismatch):
        store.copy_from(UPLOADS, SourceObject("incoming/x.dcm", 9, swapped["VersionId"],
                                              sha256=digest), "studies/t/original.dcm")


def test_uploads_with_one_sequencer_are_told_apart_by_their_version(stack: Stack) -> None:
    """LocalStack sends every notification with the same sequencer."""
    files = mr_files(2)
    body = declare_study(stack, files)
    study_id, prefix = body["study_id"], incoming_prefix(body["study_id"])
    deliver_upload(stack, prefix + "mr0.dcm", NOT_DICOM, "0A")
    again = deliver_upload(stack, prefix + "mr0.dcm", files["mr0.dcm"], "0A")
    assert again["processed"][0]["outcome"] == "replaced"
    deliver_upload(stack, prefix + "mr1.dcm", files["mr1.dcm"], "0A")
    deliver_success_events(stack)
    late = deliver_upload(stack, prefix + "mr1.dcm", NOT_DICOM, "0A")

    assert late["processed"][0]["outcome"] == "late"
    assert study_status(stack, study_id)["state"] == "STORED"
    assert_stored_from(stack, study_id, files)


def test_previews_keep_to_the_deployment_s_limits(stack: Stack) -> None:
    """A frame over the configured preview size (these MR frames are 512 bytes) gets no
    preview but a warning; the study itself is stored."""
    limits = {**data_document("config.json")["limits"], "max_preview_frame_bytes": 256}
    descriptor = stack.handler("descriptor").pipeline.services
    descriptor.config = build_config({"limits": limits})
    files = mr_files(2)
    study_id = upload_all(stack, files)
    deliver_success_events(stack)

    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert "preview.too-large" in {f["rule"] for f in status["findings"]}
    assert stack.keys(STORE, f"studies/{study_id}/previews/") == []
