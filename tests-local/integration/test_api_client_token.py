"""``POST /upload`` with a ``client_token`` on moto: a declaration sent again names the study
the first one made, never a second one, and a token reused for other files is refused."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import (
    API_TOKEN,
    STATUS_TABLE,
    UPLOADS,
    FakeContext,
    Stack,
    api_event,
    contract_checked,
    load_function,
)
from pydicom.data import get_testdata_file
from test_api_scope import SITE_B, use_secret
from test_pipeline import call_api, deliver_success_events, deliver_upload, study_status

from pacs_validator.contract.auth import Caller
from pacs_validator.contract.keys import incoming_prefix, study_id_for_token
from pacs_validator.contract.upload_request import TokenReused
from pacs_validator.flow.uploads import Uploads

CT = Path(get_testdata_file("CT_small.dcm")).read_bytes()
ADMIN = Caller("initial", admin=True)
"""The caller of ``API_TOKEN``, the stack's token."""


def declaration(token: str, **sizes: int) -> dict[str, Any]:
    return {"files": [{"name": name, "size": size} for name, size in sizes.items()],
            "client_token": token}


def study_items(study_id: str) -> list[str]:
    """The sort keys of the status table's items of one study."""
    items = boto3.resource("dynamodb").Table(STATUS_TABLE).query(
        KeyConditionExpression="study_id = :id",
        ExpressionAttributeValues={":id": study_id})["Items"]
    return sorted(str(item["item"]) for item in items)


def manifest(stack: Stack, study_id: str) -> Any:
    body = stack.s3.get_object(Bucket=UPLOADS, Key=f"manifests/{study_id}.json")["Body"]
    return json.loads(body.read())


def test_a_declaration_sent_again_answers_200_with_its_study_and_fresh_forms(
        stack: Stack) -> None:
    body = declaration("gw-1.study-0042", **{"a.dcm": 10, "b.dcm": 20})
    status, first = call_api(stack, "POST", "/upload", body)
    assert status == 201
    study_id = first["study_id"]

    status, again = call_api(stack, "POST", "/upload", body)

    assert status == 200
    assert again["study_id"] == study_id
    assert again.keys() == first.keys()
    assert [u["fields"]["key"] for u in again["uploads"]] == [
        f"incoming/{study_id}/a.dcm", f"incoming/{study_id}/b.dcm"]
    assert (again["files"], again["max_bytes"]) == (2, 20)
    assert study_items(study_id) == ["declaration", "study"]
    assert study_status(stack, study_id)["state"] == "AWAITING_UPLOAD"


def test_a_token_reused_for_other_files_is_409_naming_the_rule(stack: Stack) -> None:
    status, first = call_api(stack, "POST", "/upload", declaration("t-1", **{"a.dcm": 10}))
    assert status == 201

    for other in (declaration("t-1", **{"a.dcm": 11}), declaration("t-1", **{"b.dcm": 10}),
                  {**declaration("t-1", **{"a.dcm": 10}), "deadline_seconds": 600}):
        status, refused = call_api(stack, "POST", "/upload", other)
        assert (status, refused["rule"]) == (409, "upload.token-reused")
        assert "another declaration" in refused["message"]
    assert manifest(stack, first["study_id"]) == {"files": [{"name": "a.dcm", "size": 10}]}


def test_a_client_token_not_of_its_form_is_400_naming_the_rule(stack: Stack) -> None:
    status, refused = call_api(stack, "POST", "/upload", declaration("a/b", **{"a.dcm": 1}))

    assert status == 400
    assert refused["message"] == ("client_token must be 1 to 64 letters, digits, '.', '_' "
                                  "or '-'")


def test_one_token_of_two_owners_makes_two_studies_each_its_owners_alone(
        stack: Stack) -> None:
    use_secret({"admins": ["initial"], "initial": API_TOKEN, "site-b": SITE_B})
    body = declaration("shared-name", **{"a.dcm": 10})
    mine = call_api(stack, "POST", "/upload", body)[1]["study_id"]

    def as_site_b(method: str, path: str, sent: Any = None) -> tuple[int, dict[str, Any]]:
        response = stack.handler("api").lambda_handler(
            api_event(method, path, sent, token=SITE_B), FakeContext())
        return response["statusCode"], json.loads(response["body"])

    status, theirs = as_site_b("POST", "/upload", body)
    assert status == 201
    assert theirs["study_id"] != mine
    assert as_site_b("GET", f"/status/{mine}")[0] == 404
    status, again = as_site_b("POST", "/upload", body)
    assert (status, again["study_id"]) == (200, theirs["study_id"])


def test_a_stored_study_declared_again_is_200_with_its_id_and_no_forms(stack: Stack) -> None:
    body = declaration("t-stored", **{"ct.dcm": len(CT)})
    status, first = call_api(stack, "POST", "/upload", body)
    study_id = first["study_id"]
    deliver_upload(stack, incoming_prefix(study_id) + "ct.dcm", CT)
    deliver_success_events(stack)

    status, again = call_api(stack, "POST", "/upload", body)

    assert status == 200
    assert again == {"study_id": study_id, "expires_in": 0, "max_bytes": len(CT),
                     "files": 1, "uploads": []}
    assert study_status(stack, study_id)["state"] == "STORED"


def test_a_declaration_made_again_is_not_counted_against_the_open_studies_cap(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_OPEN_STUDIES", "1")
    stack.functions["api"] = api = load_function("api")
    api.lambda_handler = contract_checked(api.lambda_handler)
    body = declaration("t-cap", **{"a.dcm": 10})
    assert call_api(stack, "POST", "/upload", body)[0] == 201

    assert call_api(stack, "POST", "/upload", body)[0] == 200
    assert call_api(stack, "POST", "/upload", declaration("t-new", **{"a.dcm": 10}))[0] == 429
    assert call_api(stack, "POST", "/upload", {"filename": "a.dcm", "size": 10})[0] == 429


def racing_environments(monkeypatch: pytest.MonkeyPatch, count: int) -> list[Uploads]:
    """The uploads flow of ``count`` API functions, as wired in as many Lambda environments
    (on the status table and bucket adapters), each of which waits, once it has first
    looked the token's study up, until all have: every one finds none. The race is run on
    the flow, not the handler: Powertools keeps the current request on its router's class,
    so one process answers one request at a time."""
    barrier = threading.Barrier(count, timeout=30)
    environments = []
    for _ in range(count):
        studies: Uploads = load_function("api").studies
        looked_up, waited = studies.table.study, threading.Event()

        def study_after_all(study_id: str, look_up: Any = looked_up,
                            waited: threading.Event = waited) -> Any:
            found = look_up(study_id)
            if not waited.is_set():
                waited.set()
                barrier.wait()
            return found

        monkeypatch.setattr(studies.table, "study", study_after_all)
        environments.append(studies)
    return environments


def race(environments: list[Uploads], bodies: list[dict[str, Any]]) -> list[int]:
    """The status each environment answers its body with, all declared at once by the
    stack's admin caller (201 created, 200 declared again, 409 token reused)."""
    statuses = [0] * len(environments)

    def declare(index: int) -> None:
        try:
            declared = environments[index].declare(ADMIN, bodies[index], int(time.time()))
            statuses[index] = 201 if declared.created else 200
        except TokenReused:
            statuses[index] = 409

    threads = [threading.Thread(target=declare, args=(i,)) for i in range(len(environments))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def token_study_id(token: str) -> str:
    return study_id_for_token(ADMIN.identity, token)


def test_concurrent_first_declarations_of_one_token_make_one_study(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    body = declaration("t-race", **{"a.dcm": 10, "b.dcm": 20})

    statuses = race(racing_environments(monkeypatch, 4), [body] * 4)

    assert sorted(statuses) == [200, 200, 200, 201]
    study_id = token_study_id("t-race")
    assert study_items(study_id) == ["declaration", "study"]
    assert manifest(stack, study_id) == {"files": body["files"]}
    listing = call_api(stack, "GET", "/studies")[1]
    assert [entry["study_id"] for entry in listing["studies"]] == [study_id]
    assert call_api(stack, "POST", "/upload", body)[0] == 200


def test_concurrent_declarations_of_one_token_with_other_files_leave_the_winners_manifest(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [declaration("t-race", **{"a.dcm": 10}), declaration("t-race", **{"b.dcm": 20})]

    statuses = race(racing_environments(monkeypatch, 2), bodies)

    assert sorted(statuses) == [201, 409]
    winner = bodies[statuses.index(201)]
    study_id = token_study_id("t-race")
    assert manifest(stack, study_id) == {"files": winner["files"]}
    assert call_api(stack, "POST", "/upload", winner)[0] == 200
    assert call_api(stack, "POST", "/upload", bodies[statuses.index(409)])[0] == 409
