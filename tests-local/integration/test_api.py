"""The REST API handler: upload declarations, status lookups and health."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import UPLOADS, Stack
from test_pipeline import call_api


def test_upload_returns_one_presigned_post_per_file_capped_by_size(stack: Stack) -> None:
    declared = [{"name": "a.dcm", "size": 10}, {"name": "b.dcm", "size": 20}]
    status, body = call_api(stack, "POST", "/upload", {"files": declared})
    assert status == 201
    assert len(body["study_id"]) == 32
    assert [u["name"] for u in body["uploads"]] == ["a.dcm", "b.dcm"]
    for upload in body["uploads"]:
        assert upload["fields"]["key"] == f"incoming/{body['study_id']}/{upload['name']}"
        assert UPLOADS in upload["url"]
    assert body["max_bytes"] == 5 * 1024 * 1024
    assert body["expires_in"] == 900
    _, status_body = call_api(stack, "GET", f"/status/{body['study_id']}",
                              params={"study_id": body["study_id"]})
    assert status_body["state"] == "AWAITING_UPLOAD"
    assert status_body["manifest"]["declared"] == ["a.dcm", "b.dcm"]


def test_single_file_form_is_accepted(stack: Stack) -> None:
    status, body = call_api(stack, "POST", "/upload", {"filename": "one.dcm", "size": 5})
    assert status == 201
    assert [u["name"] for u in body["uploads"]] == ["one.dcm"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"files": []},
        {"files": [{"name": "a.dcm"}]},
        {"files": [{"name": "a.dcm", "size": -1}]},
        {"files": [{"name": "a.dcm", "size": "12"}]},
        {"files": [{"name": "", "size": 1}]},
        {"files": [{"name": "a.dcm", "size": 1}, {"name": "a.dcm", "size": 1}]},
    ],
)
def test_malformed_upload_body_is_400(stack: Stack, body: object) -> None:
    status, response = call_api(stack, "POST", "/upload", body)
    assert status == 400
    assert response["message"]


def test_declared_size_over_the_cap_is_413(stack: Stack) -> None:
    status, response = call_api(stack, "POST", "/upload",
                                {"files": [{"name": "big.dcm", "size": 5 * 1024 * 1024 + 1}]})
    assert status == 413
    assert "cap" in response["message"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("a%2F..%2Fb.dcm", "a_2F.._2Fb.dcm"),
        ("..\\..\\win.dcm", "win.dcm"),
        ("héllo wörld.dcm", "hello_world.dcm"),
        ("...", "file.dcm"),
    ],
)
def test_file_names_are_sanitised_into_the_study_prefix(
    stack: Stack, name: str, expected: str
) -> None:
    status, body = call_api(stack, "POST", "/upload", {"files": [{"name": name, "size": 1}]})
    assert status == 201
    key = body["uploads"][0]["fields"]["key"]
    assert key == f"incoming/{body['study_id']}/{expected}"


def test_unknown_study_is_404_and_malformed_id_is_400(stack: Stack) -> None:
    unknown = "0" * 32
    assert call_api(stack, "GET", f"/status/{unknown}", params={"study_id": unknown})[0] == 404
    for bad in ("xyz", "..%2F..%2Fetc", "A" * 32, "g" * 32):
        assert call_api(stack, "GET", f"/status/{bad}", params={"study_id": bad})[0] == 400


def test_health_answers_ok(stack: Stack) -> None:
    assert call_api(stack, "GET", "/health") == (200, {"status": "ok"})


def test_storage_outage_is_503_not_a_bare_500(stack: Stack) -> None:
    stack.handler("api").table.table.delete()
    status, response = call_api(stack, "POST", "/upload", {"filename": "a.dcm", "size": 1})
    assert status == 503
    assert "unavailable" in response["message"]


def test_each_presigned_post_is_capped_at_its_declared_size(stack: Stack) -> None:
    declared = [{"name": "a.dcm", "size": 1000}, {"name": "b.dcm", "size": 4096}]
    status, body = call_api(stack, "POST", "/upload", {"files": declared})
    assert status == 201
    for upload, entry in zip(body["uploads"], declared, strict=True):
        policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
        assert ["content-length-range", 1, entry["size"]] in policy["conditions"]
