"""Who sees which study: callers own what they declare, admins read everything, every access
is audited; and the caps and headers of the API's answers."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from conftest import (
    API_TOKEN,
    STATUS_TABLE,
    TOKENS_SECRET,
    FakeContext,
    Stack,
    api_event,
    load_function,
)
from pydicom.data import get_testdata_file
from test_pipeline import deliver_upload, run_study

SITE_A = ["site-a-token-old-0123456789", "site-a-token-new-0123456789"]
SITE_B = "site-b-token-0123456789abcdef"
PATIENT_NAME = "CompressedSamples^CT1"
"""CT_small.dcm's PatientName: must never reach a log line."""


def use_secret(document: dict[str, Any]) -> None:
    """Replace the token secret, as an operator would, and let the API read it now."""
    boto3.client("secretsmanager").put_secret_value(SecretId=TOKENS_SECRET,
                                                    SecretString=json.dumps(document))
    parameters.clear_caches()  # as after TOKEN_CACHE_SECONDS


@pytest.fixture
def sites(stack: Stack) -> Stack:
    """The admin ``initial``, site-a rotating between two tokens, and site-b."""
    use_secret({"admins": ["initial"], "initial": API_TOKEN, "site-a": SITE_A,
                "site-b": SITE_B})
    return stack


def call(stack: Stack, method: str, path: str, body: Any = None, token: str | None = API_TOKEN,
         event: dict[str, Any] | None = None) -> tuple[int, dict[str, Any], dict[str, Any]]:
    response = stack.handler("api").lambda_handler(
        event or api_event(method, path, body, token=token), FakeContext())
    return response["statusCode"], json.loads(response["body"]), response["multiValueHeaders"]


def declare(stack: Stack, token: str | None, name: str = "a.dcm", size: int = 1) -> str:
    status, body, _ = call(stack, "POST", "/upload", {"filename": name, "size": size}, token)
    assert status == 201, body
    return str(body["study_id"])


def owner_of(study_id: str) -> str | None:
    item = boto3.resource("dynamodb").Table(STATUS_TABLE).get_item(
        Key={"study_id": study_id, "item": "study"})["Item"]
    return item.get("owner")  # type: ignore[return-value]


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_another_callers_study_is_404_exactly_as_an_unknown_one(sites: Stack) -> None:
    study = declare(sites, SITE_A[0])
    unknown = "f" * 32
    for method, path, body in (("GET", "/status/{}", None),
                               ("POST", "/upload/{}", {"names": ["a.dcm"]})):
        refused = call(sites, method, path.format(study), body, token=SITE_B)[:2]
        missing = call(sites, method, path.format(unknown), body, token=SITE_B)[:2]
        assert refused == missing
        assert refused[0] == 404
        assert call(sites, method, path.format(study), body, token=SITE_A[1])[0] == 200


def test_an_admin_reads_and_renews_every_study_and_alone_sees_plain_drops(sites: Stack) -> None:
    studies = [declare(sites, SITE_A[0]), declare(sites, SITE_B)]
    drop = deliver_upload(sites, "incoming/x.dcm",
                          Path(get_testdata_file("CT_small.dcm")).read_bytes())
    plain = drop["processed"][0]["study_id"]
    assert owner_of(plain) is None
    for study in studies:
        assert call(sites, "GET", f"/status/{study}")[0] == 200
        assert call(sites, "POST", f"/upload/{study}", {"names": ["a.dcm"]})[0] == 200
    assert call(sites, "GET", f"/status/{plain}")[0] == 200
    for token in (SITE_A[0], SITE_B):
        assert call(sites, "GET", f"/status/{plain}", token=token)[0] == 404


def test_both_tokens_of_a_rotating_label_work_and_own_the_same_studies(sites: Stack) -> None:
    old, new = (declare(sites, token) for token in SITE_A)
    assert owner_of(old) == owner_of(new) == "site-a"
    assert owner_of(declare(sites, API_TOKEN)) == "initial"
    for study in (old, new):
        for token in SITE_A:
            assert call(sites, "GET", f"/status/{study}", token=token)[0] == 200


def test_the_first_secret_format_still_authenticates_its_labels(stack: Stack) -> None:
    use_secret({"initial": API_TOKEN, "site-b": SITE_B})
    mine = declare(stack, API_TOKEN)
    assert owner_of(mine) == "initial"
    assert call(stack, "GET", f"/status/{mine}")[0] == 200
    assert call(stack, "GET", f"/status/{mine}", token=SITE_B)[0] == 404  # nobody is admin


def test_each_access_is_audited_once_without_file_names_or_patient_data(
        sites: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    study = run_study(sites, {"secret-name-of-a-patient.dcm": data})
    call(sites, "GET", f"/status/{study}", token=SITE_B)
    call(sites, "GET", f"/status/{study}")
    call(sites, "POST", f"/upload/{study}", {"names": ["secret-name-of-a-patient.dcm"]})
    call(sites, "POST", "/upload", {"filename": "a.dcm", "size": 10**15}, SITE_B)

    logged = repr([vars(record) for record in caplog.records])  # messages and extras
    assert "secret-name-of-a-patient" not in logged
    assert PATIENT_NAME not in logged and API_TOKEN not in logged
    assert [r.audit for r in caplog.records if r.getMessage() == "audit"] == [
        {"caller": "initial", "study_id": study, "action": "create", "outcome": "ok"},
        {"caller": "site-b", "study_id": study, "action": "status", "outcome": "refused"},
        {"caller": "initial", "study_id": study, "action": "status", "outcome": "ok"},
        {"caller": "initial", "study_id": study, "action": "links", "outcome": "ok"},
        {"caller": "initial", "study_id": study, "action": "renew", "outcome": "closed"},
        {"caller": "site-b", "study_id": None, "action": "create", "outcome": "too-large"},
    ]


def iam_event(method: str, path: str, principal: str, body: Any = None) -> dict[str, Any]:
    event = api_event(method, path, body, token=None)
    event["requestContext"]["identity"]["userArn"] = principal
    return event


def test_in_iam_mode_the_caller_is_the_signing_principal(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_AUTH", "IAM")
    stack.functions["api"] = load_function("api")
    alice = "arn:aws:iam::123456789012:user/alice"
    bob = "arn:aws:sts::123456789012:assumed-role/site-b/session"
    status, body, _ = call(stack, "POST", "/upload",
                           event=iam_event("POST", "/upload", alice, {"filename": "a", "size": 1}))
    assert status == 201
    study = body["study_id"]
    assert owner_of(study) == alice
    assert call(stack, "GET", "", event=iam_event("GET", f"/status/{study}", alice))[0] == 200
    assert call(stack, "GET", "", event=iam_event("GET", f"/status/{study}", bob))[0] == 404
    assert call(stack, "GET", f"/status/{study}", token=None)[0] == 401  # no principal


def test_in_iam_mode_every_session_of_a_role_is_the_role_and_admin_principals_read_all(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_AUTH", "IAM")
    monkeypatch.setenv("ADMIN_PRINCIPALS", "arn:aws:iam::123456789012:role/ops/operators")
    stack.functions["api"] = load_function("api")
    session = "arn:aws:sts::123456789012:assumed-role/{}/{}".format
    status, body, _ = call(stack, "POST", "/upload", event=iam_event(
        "POST", "/upload", session("site-a", "monday"), {"filename": "a", "size": 1}))
    assert status == 201
    study = body["study_id"]
    assert owner_of(study) == "arn:aws:iam::123456789012:role/site-a"

    def status_for(principal: str) -> int:
        return call(stack, "GET", "", event=iam_event("GET", f"/status/{study}", principal))[0]

    assert status_for(session("site-a", "tuesday")) == 200
    assert status_for(session("operators", "on-call")) == 200
    assert status_for(session("site-b", "monday")) == 404


def test_a_declared_total_over_the_study_cap_is_413(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_STUDY_BYTES", "1000")
    stack.functions["api"] = load_function("api")
    files = [{"name": f"{n}.dcm", "size": 400} for n in range(3)]
    status, body, _ = call(stack, "POST", "/upload", {"files": files})
    assert status == 413
    assert "per study" in body["message"]
    assert call(stack, "POST", "/upload", {"files": files[:2]})[0] == 201


class InlineBlocks(HTMLParser):
    """The text of each ``<script>`` and ``<style>`` as a browser's parser sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[str, list[str]] = {"script": [], "style": []}
        self.open: str | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.blocks:
            self.open = tag
            self.blocks[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        self.open = None

    def handle_data(self, data: str) -> None:
        if self.open:
            self.blocks[self.open][-1] += data


def sha256_source(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def test_the_upload_page_is_served_with_a_strict_content_security_policy(stack: Stack) -> None:
    form_origin = origin(call(stack, "POST", "/upload", {"filename": "a", "size": 1})[1]
                         ["uploads"][0]["url"])
    study = run_study(stack, {"a.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes()})
    link_origin = origin(call(stack, "GET", f"/status/{study}")[1]["links"]["metadata"])
    response = stack.handler("api").lambda_handler(api_event("GET", "/", token=None),
                                                   FakeContext())
    headers = response["multiValueHeaders"]
    policy = dict(directive.split(" ", 1) for directive in
                  headers["Content-Security-Policy"][0].split("; "))
    parser = InlineBlocks()
    parser.feed(response["body"])
    assert len(parser.blocks["script"]) == 4  # reader, checksum, report, page
    assert policy["script-src"].split() == [sha256_source(s) for s in parser.blocks["script"]]
    assert policy["style-src"].split() == [sha256_source(s) for s in parser.blocks["style"]]
    assert set(policy["connect-src"].split()) == {"'self'", form_origin, link_origin}
    assert policy["img-src"] == link_origin
    assert policy["default-src"] == policy["form-action"] == "'none'"
    assert policy["frame-ancestors"] == policy["base-uri"] == "'none'"
    assert "unsafe" not in headers["Content-Security-Policy"][0]
    assert headers["X-Content-Type-Options"] == ["nosniff"]
    assert headers["Referrer-Policy"] == ["no-referrer"]


@pytest.mark.parametrize("path", ["/health", "/status/" + "0" * 32, "/nowhere"])
def test_json_answers_carry_nosniff_and_no_referrer(stack: Stack, path: str) -> None:
    _, _, headers = call(stack, "GET", path)
    assert headers["X-Content-Type-Options"] == ["nosniff"]
    assert headers["Referrer-Policy"] == ["no-referrer"]
