"""One SOP instance, stored once: a study sent again, an instance sent with other bytes, a
study sent again with more, and DuplicatePolicy version, through the handlers on moto."""

from __future__ import annotations

import io
from collections.abc import Iterator

import boto3
import pydicom
import pytest
from conftest import STATUS_TABLE, STORE, Stack
from crafted import with_other_bytes
from test_pipeline import (
    MR_STUDY,
    deliver_success_events,
    deliver_upload,
    detail_types,
    run_study,
    study_status,
)

from pacs_validator.contract.duplicates import DuplicatePolicy


@pytest.fixture
def mr_files() -> dict[str, bytes]:
    """A real three-instance MR study of pydicom's corpus (dicomdirtests), by file name."""
    return {f"{path.parent.name}-{path.name}.dcm": path.read_bytes() for path in MR_STUDY}




def findings_of(status: dict[str, object], rule: str) -> list[dict[str, object]]:
    return [f for f in status["findings"] if f["rule"] == rule]  # type: ignore[attr-defined, index]


def index_entry(stack: Stack, sop_instance_uid: str) -> dict[str, object]:
    """The one entry of the index of stored instances for ``sop_instance_uid``."""
    [item] = [item for item in boto3.resource("dynamodb").Table(STATUS_TABLE).scan()["Items"]
              if item.get("sop_instance_uid") == sop_instance_uid]
    return {"stored_in": item["stored_in"], "version": int(item["version"])}


def uid_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture
def versioning(stack: Stack) -> Iterator[None]:
    services = stack.handler("validator").pipeline.services
    services.duplicate_policy = DuplicatePolicy.VERSION
    yield
    services.duplicate_policy = DuplicatePolicy.REFUSE


def test_a_study_sent_again_is_acknowledged_with_the_existing_study_id(
        stack: Stack, mr_files: dict[str, bytes]) -> None:
    first = run_study(stack, mr_files)
    again = run_study(stack, mr_files)

    status = study_status(stack, again)
    assert (status["state"], status["status"], status["stored_as"]) == ("STORED", 200, first)
    assert status["counts"]["acknowledged"] == len(mr_files)
    assert status["keys"]["prefix"] == f"studies/{first}/"
    [finding] = findings_of(status, "instance.duplicate")
    assert finding["severity"] == "warning" and first in str(finding["message"])
    assert stack.keys(STORE, f"studies/{again}/") == []
    assert "validation.success" not in detail_types(stack, again)
    processed = [e for e in stack.published() if e["detail"]["study_id"] == again
                 and e["detail-type"] == "study.processed"]
    assert [e["detail"]["stored_as"] for e in processed] == [first]
    assert "stored_as" not in study_status(stack, first)


def test_an_instance_sent_again_with_other_bytes_is_refused_by_default(
        stack: Stack, mr_files: dict[str, bytes]) -> None:
    first = run_study(stack, mr_files)
    name = sorted(mr_files)[0]
    changed = {**mr_files, name: with_other_bytes(mr_files[name])}

    again = run_study(stack, changed)

    status = study_status(stack, again)
    assert (status["state"], status["status"]) == ("REJECTED", 422)
    [conflict] = findings_of(status, "instance.conflict")
    assert conflict["severity"] == "error" and first in str(conflict["message"])
    assert conflict["message"].startswith("1 instance(s)")  # type: ignore[union-attr]
    assert stack.keys(STORE, f"studies/{again}/") == []
    assert index_entry(stack, uid_of(mr_files[name])) == {"stored_in": first, "version": 1}


def test_under_policy_version_other_bytes_are_stored_as_the_next_version(
        stack: Stack, mr_files: dict[str, bytes], versioning: None) -> None:
    first = run_study(stack, mr_files)
    name = sorted(mr_files)[0]
    changed = {**mr_files, name: with_other_bytes(mr_files[name])}

    again = run_study(stack, changed)

    status = study_status(stack, again)
    assert (status["state"], status["status"]) == ("STORED", 200)
    assert (status["counts"]["versioned"], status["counts"]["acknowledged"]) == (
        1, len(mr_files) - 1)
    assert [f["severity"] for f in findings_of(status, "instance.new-version")] == ["warning"]
    uid = uid_of(mr_files[name])
    assert stack.keys(STORE, f"studies/{again}/instances/") == [
        f"studies/{again}/instances/{uid}.dcm"]
    assert index_entry(stack, uid) == {"stored_in": again, "version": 2}
    assert f"studies/{first}/instances/{uid}.dcm" in stack.keys(STORE, f"studies/{first}/")


def test_a_study_sent_again_with_one_more_instance_stores_only_the_new_one(
        stack: Stack, mr_files: dict[str, bytes]) -> None:
    names = sorted(mr_files)
    first = run_study(stack, {name: mr_files[name] for name in names[:-1]})

    again = run_study(stack, mr_files)

    status = study_status(stack, again)
    assert (status["state"], status["counts"]["acknowledged"]) == ("STORED", len(names) - 1)
    assert "stored_as" not in status
    new_uid = uid_of(mr_files[names[-1]])
    assert stack.keys(STORE, f"studies/{again}/instances/") == [
        f"studies/{again}/instances/{new_uid}.dcm"]
    assert index_entry(stack, new_uid)["stored_in"] == again
    assert index_entry(stack, uid_of(mr_files[names[0]]))["stored_in"] == first


def test_an_instance_another_owner_stored_is_stored_again_and_names_no_study(
        stack: Stack, mr_files: dict[str, bytes]) -> None:
    """Each owner has an index of its own: a plain drop (no owner) of an instance a token's
    study stored learns nothing of that study and gets its own copy."""
    name = sorted(mr_files)[0]
    first = run_study(stack, {name: mr_files[name]})
    key = f"incoming/{name}"
    deliver_upload(stack, key, mr_files[name])
    deliver_success_events(stack)

    [item] = [item for item in boto3.resource("dynamodb").Table(STATUS_TABLE).scan()["Items"]
              if item["item"] == "study" and item["study_id"] != first]
    dropped = item["study_id"]
    assert item["state"] == "STORED" and "stored_as" not in item
    assert first not in str(item["findings"])
    assert stack.keys(STORE, f"studies/{dropped}/original.dcm") == [
        f"studies/{dropped}/original.dcm"]
