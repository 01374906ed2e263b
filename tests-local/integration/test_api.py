"""The REST API handler: upload declarations, status lookups and health."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import UPLOADS, FakeContext, Stack, api_event
from test_pipeline import call_api


def policy_of(form: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(form["fields"]["policy"]))
    return policy


def test_upload_returns_a_study_wide_form_and_the_manifest_outside_the_table(
    stack: Stack,
) -> None:
    declared = [{"name": "a.dcm", "size": 10}, {"name": "b.dcm", "size": 20}]
    status, body = call_api(stack, "POST", "/upload", {"files": declared})
    assert status == 201
    study_id = body["study_id"]
    assert len(study_id) == 32
    assert body["files"] == 2
    assert body["upload"]["key_prefix"] == f"incoming/{study_id}/"
    assert UPLOADS in body["upload"]["url"]
    conditions = policy_of(body["upload"])["conditions"]
    assert ["starts-with", "$key", f"incoming/{study_id}/"] in conditions
    assert ["content-length-range", 1, 5 * 1024 * 1024] in conditions
    assert [u["name"] for u in body["uploads"]] == ["a.dcm", "b.dcm"]
    for upload in body["uploads"]:
        assert upload["fields"]["key"] == f"incoming/{study_id}/{upload['name']}"
    assert body["max_bytes"] == 5 * 1024 * 1024
    assert body["expires_in"] == 900
    manifest = stack.s3.get_object(Bucket=UPLOADS, Key=f"manifests/{study_id}.json")
    assert json.loads(manifest["Body"].read()) == {"files": declared}
    _, status_body = call_api(stack, "GET", f"/status/{study_id}", params={"study_id": study_id})
    assert status_body["state"] == "AWAITING_UPLOAD"
    assert status_body["counts"] == {"declared": 2, "received": 0}
    assert status_body["files"] == []
    assert status_body["next"] is None


def test_a_20000_file_declaration_gets_a_small_answer_with_only_the_study_wide_form(
    stack: Stack,
) -> None:
    declared = [{"name": f"IM{n:06d}.dcm", "size": 600_000} for n in range(20_000)]
    event = api_event("POST", "/upload", {"files": declared})
    response = stack.handler("api").lambda_handler(event, FakeContext())

    assert response["statusCode"] == 201
    assert len(response["body"]) <= 64 * 1024
    body = json.loads(response["body"])
    assert body["files"] == 20_000
    assert "uploads" not in body
    assert body["upload"]["key_prefix"] == f"incoming/{body['study_id']}/"


def test_more_files_than_the_cap_per_study_is_400(stack: Stack) -> None:
    declared = [{"name": f"{n}.dcm", "size": 1} for n in range(20_001)]
    status, response = call_api(stack, "POST", "/upload", {"files": declared})
    assert status == 400
    assert "20000" in response["message"]


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
        assert ["content-length-range", 1, entry["size"]] in policy_of(upload)["conditions"]


def test_root_serves_the_upload_page(stack: Stack) -> None:
    response = stack.handler("api").lambda_handler(api_event("GET", "/"), FakeContext())

    assert response["statusCode"] == 200
    assert response["multiValueHeaders"]["Content-Type"] == ["text/html; charset=utf-8"]
    page = response["body"]
    assert '<form id="upload-form">' in page
    assert 'type="file" webkitdirectory multiple' in page
    assert '<label for="token">' in page
