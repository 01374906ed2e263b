"""The REST API handler: upload declarations, status lookups and health."""

from __future__ import annotations

import base64
import json
import logging
import time
from calendar import timegm
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from conftest import (
    API_TOKEN,
    STATUS_TABLE,
    TOKENS_SECRET,
    UPLOADS,
    FakeContext,
    Stack,
    api_event,
    load_function,
)
from pydicom.data import get_testdata_file
from test_pipeline import (
    call_api,
    declare_study,
    deliver_success_events,
    deliver_upload,
    run_study,
)


def policy_of(form: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(form["fields"]["policy"]))
    return policy


def expiration_of(form: dict[str, Any]) -> int:
    """The policy's expiration, in seconds since the epoch."""
    return timegm(time.strptime(policy_of(form)["expiration"], "%Y-%m-%dT%H:%M:%SZ"))


def test_upload_answers_exact_per_file_forms_and_keeps_the_manifest_outside_the_table(
    stack: Stack,
) -> None:
    declared = [{"name": "a.dcm", "size": 10}, {"name": "b.dcm", "size": 20}]
    status, body = call_api(stack, "POST", "/upload", {"files": declared})
    assert status == 201
    study_id = body["study_id"]
    assert len(study_id) == 32
    assert set(body) == {"study_id", "expires_in", "max_bytes", "files", "uploads"}
    assert body["files"] == 2
    assert [u["name"] for u in body["uploads"]] == ["a.dcm", "b.dcm"]
    for upload, size in zip(body["uploads"], (10, 20), strict=True):
        assert UPLOADS in upload["url"]
        assert upload["fields"]["key"] == f"incoming/{study_id}/{upload['name']}"
        conditions = policy_of(upload)["conditions"]
        assert {"key": f"incoming/{study_id}/{upload['name']}"} in conditions
        assert ["content-length-range", size, size] in conditions  # that file, or nothing
        assert not any(c[0] == "starts-with" and c[1] == "$key" for c in conditions
                       if isinstance(c, list))
    assert body["max_bytes"] == 20
    assert body["expires_in"] == 900
    manifest = stack.s3.get_object(Bucket=UPLOADS, Key=f"manifests/{study_id}.json")
    assert json.loads(manifest["Body"].read()) == {"files": declared}
    _, status_body = call_api(stack, "GET", f"/status/{study_id}", params={"study_id": study_id})
    assert status_body["state"] == "AWAITING_UPLOAD"
    assert status_body["counts"] == {"declared": 2, "received": 0}
    assert status_body["files"] == []
    assert status_body["next"] is None


def test_a_deployment_with_study_wide_forms_also_answers_one_for_the_prefix(
    study_wide_stack: Stack,
) -> None:
    declared = [{"name": "a.dcm", "size": 10}, {"name": "b.dcm", "size": 20}]
    status, body = call_api(study_wide_stack, "POST", "/upload", {"files": declared})
    assert status == 201
    study_id = body["study_id"]
    assert body["upload"]["key_prefix"] == f"incoming/{study_id}/"
    assert UPLOADS in body["upload"]["url"]
    conditions = policy_of(body["upload"])["conditions"]
    assert ["starts-with", "$key", f"incoming/{study_id}/"] in conditions
    assert ["content-length-range", 1, 20] in conditions  # the largest declared, not the cap
    assert [u["name"] for u in body["uploads"]] == ["a.dcm", "b.dcm"]


@pytest.mark.parametrize("deployment", ["stack", "study_wide_stack"])
def test_a_20000_file_declaration_gets_a_small_answer_with_the_first_forms(
        deployment: str, request: pytest.FixtureRequest) -> None:
    """Small on moto, whose forms carry no session token; with one, as on AWS:
    ``tests-local/unit/test_form_sizes.py``."""
    stack: Stack = request.getfixturevalue(deployment)
    names = [f"{n:06d}".rjust(128, "N") for n in range(20_000)]  # the longest safe names
    declared = [{"name": name, "size": 600_000} for name in names]
    event = api_event("POST", "/upload", {"files": declared})
    response = stack.handler("api").lambda_handler(event, FakeContext())

    assert response["statusCode"] == 201
    assert len(response["body"]) <= 64 * 1024
    body = json.loads(response["body"])
    assert body["files"] == 20_000
    assert [u["name"] for u in body["uploads"]] == names[:10]
    assert ("upload" in body) == (deployment == "study_wide_stack")


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


# --- POST /upload/{study_id}: a fresh form for a study still taking files ------------------------
CT = Path(get_testdata_file("CT_small.dcm")).read_bytes()
MR = Path(get_testdata_file("MR_small.dcm")).read_bytes()


def renew(stack: Stack, study_id: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    return call_api(stack, "POST", f"/upload/{study_id}", body, params={"study_id": study_id})


def test_forms_asked_by_name_are_exact_fresh_and_in_the_order_asked(stack: Stack) -> None:
    declared = declare_study(stack, {"a.dcm": CT, "b.dcm": MR})
    study_id = declared["study_id"]

    status, body = renew(stack, study_id, {"names": ["b.dcm", "a.dcm", "b.dcm"]})
    assert status == 200, body
    assert set(body) == {"study_id", "expires_in", "max_bytes", "files", "uploads"}
    assert (body["study_id"], body["files"], body["expires_in"]) == (study_id, 2, 900)
    assert [u["name"] for u in body["uploads"]] == ["b.dcm", "a.dcm"]
    for upload, size in zip(body["uploads"], (len(MR), len(CT)), strict=True):
        conditions = policy_of(upload)["conditions"]
        assert {"key": f"incoming/{study_id}/{upload['name']}"} in conditions
        assert ["content-length-range", size, size] in conditions
        assert {"x-amz-checksum-algorithm": "SHA256"} in conditions
        assert abs(expiration_of(upload) - (time.time() + 900)) < 60

    deliver_upload(stack, f"incoming/{study_id}/a.dcm", CT)
    assert call_api(stack, "GET", f"/status/{study_id}",
                    params={"study_id": study_id})[1]["state"] == "RECEIVING"
    status, body = renew(stack, study_id, {"names": ["b.dcm"]})  # RECEIVING
    assert status == 200, body
    assert [u["name"] for u in body["uploads"]] == ["b.dcm"]


@pytest.mark.parametrize("body", [
    {"names": ["a.dcm", "never-declared.dcm"]},
    {"names": []},
    {"names": [f"{n}.dcm" for n in range(101)]},
    {"names": ["a.dcm", 7]},
    {"names": "a.dcm"},
    {"names": ["a.dcm"], "files": []},
])
def test_forms_for_undeclared_names_or_a_malformed_list_are_400(
    stack: Stack, body: dict[str, Any],
) -> None:
    study_id = declare_study(stack, {"a.dcm": CT})["study_id"]
    status, answer = renew(stack, study_id, body)
    assert status == 400, answer
    assert "never-declared" not in answer["message"]  # how many, never which


def test_without_study_wide_forms_a_bodiless_renewal_is_400_saying_how_to_ask(
    stack: Stack,
) -> None:
    study_id = declare_study(stack, {"a.dcm": CT})["study_id"]
    for body in (None, {}):
        status, answer = renew(stack, study_id, body)
        assert status == 400
        assert '{"names": [file names]}' in answer["message"]


def test_renewal_answers_a_fresh_study_wide_form_where_the_deployment_has_them(
    study_wide_stack: Stack,
) -> None:
    stack = study_wide_stack
    declared = declare_study(stack, {"a.dcm": CT, "b.dcm": CT})
    study_id = declared["study_id"]

    status, body = renew(stack, study_id)  # AWAITING_UPLOAD
    assert status == 200, body
    assert set(body) == {"study_id", "upload", "uploads", "expires_in", "max_bytes", "files"}
    assert body["uploads"] == []
    assert (body["study_id"], body["files"], body["expires_in"], body["max_bytes"]) == (
        study_id, 2, 900, len(CT))  # a renewed form too caps files at the largest declared
    assert body["upload"]["key_prefix"] == f"incoming/{study_id}/"
    assert UPLOADS in body["upload"]["url"]
    conditions = policy_of(body["upload"])["conditions"]
    assert ["starts-with", "$key", f"incoming/{study_id}/"] in conditions
    assert ["content-length-range", 1, len(CT)] in conditions
    assert {"x-amz-checksum-algorithm": "SHA256"} in conditions
    assert abs(expiration_of(body["upload"]) - (time.time() + 900)) < 60

    deliver_upload(stack, f"incoming/{study_id}/a.dcm", CT)
    status, body = renew(stack, study_id, {})  # RECEIVING, with an empty JSON object
    assert status == 200, body
    assert body["study_id"] == study_id and body["files"] == 2


@pytest.mark.parametrize(("files", "state"), [({"ct.dcm": CT}, "STORED"),
                                              ({"ct.dcm": CT, "mr.dcm": MR}, "REJECTED")])
def test_renewal_for_a_study_past_receiving_is_409_naming_its_state(
    stack: Stack, files: dict[str, bytes], state: str
) -> None:
    study_id = run_study(stack, files)  # two studies' files in one: REJECTED as mixed

    status, body = renew(stack, study_id, {"names": ["ct.dcm"]})

    assert status == 409
    assert state in body["message"]
    assert call_api(stack, "GET", f"/status/{study_id}",
                    params={"study_id": study_id})[1]["state"] == state


def test_a_renewed_form_expires_at_the_upload_deadline_and_none_is_given_after_it(
    stack: Stack,
) -> None:
    status, declared = call_api(stack, "POST", "/upload", {
        "files": [{"name": "a.dcm", "size": len(CT)}], "deadline_seconds": 120})
    assert status == 201
    study_id = declared["study_id"]

    status, body = renew(stack, study_id, {"names": ["a.dcm"]})
    assert status == 200
    assert 110 <= body["expires_in"] <= 120
    assert abs(expiration_of(body["uploads"][0]) - (time.time() + body["expires_in"])) < 5

    boto3.resource("dynamodb").Table(STATUS_TABLE).update_item(
        Key={"study_id": study_id, "item": "study"}, UpdateExpression="SET deadline = :past",
        ExpressionAttributeValues={":past": int(time.time()) - 1})
    status, body = renew(stack, study_id, {"names": ["a.dcm"]})
    assert status == 409
    assert "past its upload deadline" in body["message"]


def test_the_first_forms_expire_at_a_deadline_shorter_than_their_lifetime(stack: Stack) -> None:
    status, declared = call_api(stack, "POST", "/upload", {
        "files": [{"name": "a.dcm", "size": len(CT)}], "deadline_seconds": 60})
    assert status == 201

    assert declared["expires_in"] == 60
    for form in declared["uploads"]:
        assert abs(expiration_of(form) - (time.time() + 60)) < 5
    default = call_api(stack, "POST", "/upload", {"files": [{"name": "a.dcm", "size": 1}]})[1]
    assert default["expires_in"] == 900  # the form's lifetime, shorter than the deadline


@pytest.mark.parametrize("deadline", [1, 59, 3601, "60", True])
def test_a_deadline_shorter_than_the_minimum_or_past_the_deployments_is_400(
        stack: Stack, deadline: Any) -> None:
    status, body = call_api(stack, "POST", "/upload", {
        "files": [{"name": "a.dcm", "size": 1}], "deadline_seconds": deadline})
    assert status == 400
    assert body["message"] == "deadline_seconds must be a whole number from 60 to 3600"


LONG_UNICODE_NAME = "\U0001f9e0" * 256
"""A name of 256 characters whose ``file#<name>`` sort key is 1,029 bytes, over DynamoDB's
1,024 for a sort key."""


def test_a_next_token_beyond_the_sort_key_limit_is_400_not_a_query(stack: Stack) -> None:
    study_id = declare_study(stack, {"a.dcm": CT})["study_id"]
    for name in (LONG_UNICODE_NAME, "a" * 129, "b.dcm/../c"):
        token = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
        status, body = call_api(stack, "GET", f"/status/{study_id}",
                                params={"study_id": study_id}, query={"next": token})
        assert status == 400, body
        assert body["message"] == "next is not a page token of this study"
    good = base64.urlsafe_b64encode(b"a" * 128).decode().rstrip("=")
    assert call_api(stack, "GET", f"/status/{study_id}", params={"study_id": study_id},
                    query={"next": good})[0] == 200


def test_a_declared_name_is_named_within_the_sort_key_limit(stack: Stack) -> None:
    """File records are keyed ``file#<name>``: a declared name is made a safe name (ASCII,
    at most 128 characters) before any key is formed, so no declaration reaches the limit."""
    status, declared = call_api(stack, "POST", "/upload",
                                {"files": [{"name": LONG_UNICODE_NAME + "x" * 2000, "size": 1}]})
    assert status == 201
    [form] = declared["uploads"]
    assert form["name"].isascii() and len(form["name"]) <= 128


def test_renewal_for_an_unknown_study_is_404_and_for_a_malformed_id_400(stack: Stack) -> None:
    assert renew(stack, "0" * 32, {"names": ["a.dcm"]}) == (
        404, {"statusCode": 404, "message": "no such study"})
    for bad in ("xyz", "A" * 32, "g" * 32, "0" * 31, "0" * 33):
        status, body = renew(stack, bad, {"names": ["a.dcm"]})
        assert status == 400 and "study_id" in body["message"], bad


@pytest.mark.parametrize(
    ("raw_body", "content_type", "expected"),
    [
        ('{"files": [{"name": "a.dcm", "size": 1}]}', "application/json", 400),
        ("[]", "application/json", 400),
        ("not json", "application/json", 400),
        ("{}", "text/plain", 415),
    ],
)
def test_renewal_takes_a_json_object_of_names_or_an_empty_one(
    stack: Stack, raw_body: str, content_type: str, expected: int
) -> None:
    study_id = declare_study(stack, {"a.dcm": CT})["study_id"]
    status, body, _ = answer(stack, api_event("POST", f"/upload/{study_id}", raw_body=raw_body,
                                              headers={"Content-Type": content_type}))
    assert status == expected
    assert body["message"]


def test_health_answers_ok(stack: Stack) -> None:
    assert call_api(stack, "GET", "/health") == (200, {"status": "ok"})


def test_storage_outage_is_503_not_a_bare_500(stack: Stack) -> None:
    stack.handler("api").table.table.delete()
    status, response = call_api(stack, "POST", "/upload", {"filename": "a.dcm", "size": 1})
    assert status == 503
    assert "unavailable" in response["message"]


def answer(stack: Stack, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Status, JSON body and headers of the API function's answer to a raw event."""
    response = stack.handler("api").lambda_handler(event, FakeContext())
    headers = {**response.get("headers", {}),
               **{k: ", ".join(v) for k, v in response.get("multiValueHeaders", {}).items()}}
    return response["statusCode"], json.loads(response["body"]), headers


@pytest.mark.parametrize(
    ("raw_body", "content_type", "base64_encoded", "expected"),
    [
        ("not json", "application/json", False, 400),
        ("{", "application/json", False, 400),
        ("[" * 100_000, "application/json", False, 400),
        ("9" * 5000, "application/json", False, 400),
        ('{"size": NaN}', "application/json", False, 400),
        ("\ud800", "application/json", False, 400),
        ("filename=a.dcm&size=1", "application/x-www-form-urlencoded", False, 415),
        ('{"filename": "a.dcm", "size": 1}', None, False, 415),
        ('{"filename": "a.dcm", "size": 1}', "text/plain", False, 415),
        ('{"filename": "a.dcm", "size": 1}', "application/json; charset=latin-1", False, 415),
        (base64.b64encode(b"\xff\xfe\x00binary").decode(), "application/json", True, 400),
        ("not base64 at all!", "application/json", True, 400),
        (base64.b64encode(b"filename=a.dcm").decode(), "application/x-www-form-urlencoded",
         True, 415),
    ],
)
def test_a_body_the_api_cannot_read_is_a_4xx_with_a_json_message(
    stack: Stack, raw_body: str, content_type: str | None, base64_encoded: bool, expected: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, body, _ = answer(stack, api_event("POST", "/upload", raw_body=raw_body,
                                              headers=headers, base64_encoded=base64_encoded))
    assert status == expected
    assert body["message"]


def test_a_base64_encoded_json_body_is_read_like_a_plain_one(stack: Stack) -> None:
    raw = base64.b64encode(b'{"filename": "a.dcm", "size": 1}').decode()
    status, body, _ = answer(stack, api_event(
        "POST", "/upload", raw_body=raw, base64_encoded=True,
        headers={"content-type": "Application/JSON; charset=UTF-8"}))
    assert status == 201
    assert body["files"] == 1


def test_a_body_over_the_request_cap_is_413_and_a_20000_file_one_fits(stack: Stack) -> None:
    cap = stack.handler("api").settings.max_request_bytes
    declared = [{"name": "1.2.840.113619.2.55.3.604688119.969.1234567890.123.dcm",
                 "size": 600_000} for _ in range(20_000)]
    assert len(json.dumps({"files": declared})) < cap
    status, body, _ = answer(stack, api_event("POST", "/upload",
                                              raw_body=" " * (cap + 1)))
    assert (status, body["statusCode"]) == (413, 413)


def test_unknown_route_is_404_and_wrong_method_is_405_both_json(stack: Stack) -> None:
    status, body, _ = answer(stack, api_event("GET", "/nowhere"))
    assert (status, body["message"]) == (404, "no such resource")
    status, body, headers = answer(stack, api_event("DELETE", "/upload"))
    assert (status, body["message"], headers["Allow"]) == (405, "method not allowed", "POST")
    status, _, headers = answer(stack, api_event("POST", f"/status/{'0' * 32}"))
    assert (status, headers["Allow"]) == (405, "GET")
    status, _, headers = answer(stack, api_event("GET", f"/upload/{'0' * 32}"))
    assert (status, headers["Allow"]) == (405, "POST")


def test_a_refused_body_is_logged_without_its_content(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = "PATIENT^SECRET 19700101"
    for raw_body, headers in ((secret, {"Content-Type": "application/json"}),
                              (secret, {"Content-Type": "text/plain"})):
        status, _, _ = answer(stack, api_event("POST", "/upload", raw_body=raw_body,
                                               headers=headers))
        assert status in (400, 415)
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "request refused" in logs
    assert "PATIENT" not in logs


# --- authentication ------------------------------------------------------------------------------
UPLOAD = {"filename": "a.dcm", "size": 1}


def test_upload_renewal_and_status_refuse_a_caller_without_a_valid_token(stack: Stack) -> None:
    study = f"/status/{'0' * 32}"
    known = call_api(stack, "POST", "/upload", UPLOAD)[1]["study_id"]
    for token in (None, "wrong-token-wrong-token-wrong", ""):
        for method, path, body in (("POST", "/upload", UPLOAD), ("GET", study, None),
                                   ("POST", f"/upload/{known}", None)):
            status, response, headers = answer(stack, api_event(method, path, body, token=token))
            assert status == 401, (method, token)
            assert response["message"]
            assert headers["WWW-Authenticate"].startswith("Bearer")
    basic = api_event("POST", "/upload", UPLOAD, token=None,
                      headers={"Content-Type": "application/json",
                               "Authorization": "Basic dXNlcjpwYXNz"})
    assert answer(stack, basic)[0] == 401


def test_health_needs_no_token(stack: Stack) -> None:
    assert answer(stack, api_event("GET", "/health", token=None))[:2] == (200, {"status": "ok"})


def test_two_tokens_in_the_secret_both_work_while_rotating(stack: Stack) -> None:
    new = "rotated-token-abcdefghijklmnop"
    boto3.client("secretsmanager").put_secret_value(
        SecretId=TOKENS_SECRET, SecretString=json.dumps({"initial": API_TOKEN, "2026-12": new}))
    parameters.clear_caches()  # as after TOKEN_CACHE_SECONDS
    for token in (API_TOKEN, new):
        assert answer(stack, api_event("POST", "/upload", UPLOAD, token=token))[0] == 201
    boto3.client("secretsmanager").put_secret_value(
        SecretId=TOKENS_SECRET, SecretString=json.dumps({"2026-12": new}))
    parameters.clear_caches()
    assert answer(stack, api_event("POST", "/upload", UPLOAD, token=API_TOKEN))[0] == 401
    assert answer(stack, api_event("POST", "/upload", UPLOAD, token=new))[0] == 201


def test_a_malformed_token_secret_refuses_everyone(stack: Stack) -> None:
    boto3.client("secretsmanager").put_secret_value(
        SecretId=TOKENS_SECRET, SecretString=json.dumps({"short": "abc"}))
    parameters.clear_caches()
    assert answer(stack, api_event("POST", "/upload", UPLOAD, token="abc"))[0] == 500


@pytest.mark.parametrize("mode", ["NONE", "IAM"])
def test_none_and_iam_modes_do_not_check_tokens_in_the_function(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("API_AUTH", mode)
    stack.functions["api"] = load_function("api")

    def unsigned(method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A request as API Gateway passes it on: in IAM mode, with the signer's ARN."""
        event = api_event(method, path, body, token=None)
        event["requestContext"]["identity"]["userArn"] = "arn:aws:iam::123456789012:user/u"
        return event

    status, declared, _ = answer(stack, unsigned("POST", "/upload", UPLOAD))
    assert status == 201
    path = f"/upload/{declared['study_id']}"
    assert answer(stack, unsigned("POST", path, {"names": ["a.dcm"]}))[0] == 200


@pytest.mark.parametrize("deployment", ["stack", "study_wide_stack"])
def test_every_upload_form_requires_the_files_sha256_checksum(
        deployment: str, request: pytest.FixtureRequest) -> None:
    stack: Stack = request.getfixturevalue(deployment)
    status, body = call_api(stack, "POST", "/upload", {"files": [{"name": "a.dcm", "size": 9}]})
    assert status == 201
    assert ("upload" in body) == (deployment == "study_wide_stack")
    for form in (*([body["upload"]] if "upload" in body else []), *body["uploads"]):
        assert form["fields"]["x-amz-checksum-algorithm"] == "SHA256"
        conditions = policy_of(form)["conditions"]
        assert {"x-amz-checksum-algorithm": "SHA256"} in conditions
        assert ["starts-with", "$x-amz-checksum-sha256", ""] in conditions


def test_root_serves_the_upload_page(stack: Stack) -> None:
    response = stack.handler("api").lambda_handler(api_event("GET", "/"), FakeContext())

    assert response["statusCode"] == 200
    assert response["multiValueHeaders"]["Content-Type"] == ["text/html; charset=utf-8"]
    page = response["body"]
    assert '<form id="upload-form">' in page
    assert 'type="file" webkitdirectory multiple' in page
    assert '<label for="token">' in page


def test_a_caller_at_its_cap_of_open_studies_is_429_until_one_finishes(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_OPEN_STUDIES", "2")
    stack.functions["api"] = load_function("api")
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    first = declare_study(stack, {"ct.dcm": ct})
    run_study(stack, {"ct.dcm": ct})  # stored: no longer open
    declare_study(stack, {"ct.dcm": ct})

    status, body = call_api(stack, "POST", "/upload", {"files": [{"name": "a", "size": 1}]})
    assert (status, body["message"]) == (429, "this caller has 2 studies open, the most it "
                                         "may: finish them, or wait for their deadlines, "
                                         "before declaring another")
    deliver_upload(stack, first["uploads"][0]["fields"]["key"], ct)  # the first one ends
    deliver_success_events(stack)
    assert call_api(stack, "POST", "/upload", {"files": [{"name": "a", "size": 1}]})[0] == 201
