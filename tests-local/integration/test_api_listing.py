"""GET /studies: a caller's own studies, newest first, page by page; an admin's listing of
every owner; the search by StudyInstanceUID; and the refusals of what it does not take."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import API_TOKEN, FakeContext, Stack, api_event
from pydicom.data import get_testdata_file
from test_api_scope import SITE_A, SITE_B, declare, sites  # noqa: F401 (a fixture)
from test_pipeline import deliver_upload, run_study

from pacs_validator.aws import dynamodb, study_listing
from pacs_validator.contract.study_list import ListCursor, encode_cursor

CT_SMALL = Path(get_testdata_file("CT_small.dcm")).read_bytes()
CT_SMALL_UID = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def listing(stack: Stack, token: str = API_TOKEN, **query: str | int) -> tuple[int, Any]:
    event = api_event("GET", "/studies", token=token,
                      query={k: str(v) for k, v in query.items()} or None)
    response = stack.handler("api").lambda_handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def every_page(stack: Stack, token: str = API_TOKEN, **query: str | int) -> list[list[str]]:
    """The ids of each page, followed from the first to the last."""
    pages: list[list[str]] = []
    while True:
        status, body = listing(stack, token, **query)
        assert status == 200, body
        pages.append([entry["study_id"] for entry in body["studies"]])
        if body["next"] is None:
            return pages
        query["next"] = body["next"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each study declared a second after the one before: their order is their age."""
    seconds = itertools.count(1_800_000_000)
    monkeypatch.setattr(dynamodb, "epoch_seconds", lambda: next(seconds))


def test_a_caller_lists_its_own_studies_newest_first_page_by_page(
        sites: Stack, clock: None) -> None:  # noqa: F811
    mine = [declare(sites, SITE_A[0]) for _ in range(5)]
    theirs = declare(sites, SITE_B)
    assert every_page(sites, SITE_A[1], limit=2) == [mine[4:2:-1], mine[2:0:-1], mine[:1]]
    assert every_page(sites, SITE_B) == [[theirs]]
    body = listing(sites, SITE_B)[1]
    assert body["studies"] == [{
        "study_id": theirs, "study_instance_uid": None, "study_instance_uids": 0,
        "owner": "site-b", "state": "AWAITING_UPLOAD", "status": None,
        "created_at": 1_800_000_005, "counts": {"declared": 1, "received": 0}}]


def test_an_admin_lists_every_owners_studies_and_a_plain_drop_none(sites: Stack) -> None:  # noqa: F811
    declared = {declare(sites, SITE_A[0]), declare(sites, SITE_B), declare(sites, API_TOKEN)}
    deliver_upload(sites, "incoming/x.dcm", CT_SMALL)  # a plain drop: no owner, not listed
    pages = every_page(sites, API_TOKEN, limit=2)
    assert sorted(itertools.chain(*pages)) == sorted(declared)
    assert [len(page) for page in pages][:1] == [2]


def test_a_next_token_reads_its_callers_rows_only(sites: Stack, clock: None) -> None:  # noqa: F811
    first, second = declare(sites, SITE_A[0]), declare(sites, SITE_A[0])
    theirs = declare(sites, SITE_B)
    body = listing(sites, SITE_A[0], limit=1)[1]
    assert [e["study_id"] for e in body["studies"]] == [second]
    # handed to site-b, site-a's token reads on in site-b's rows: older than it, none
    assert listing(sites, SITE_B, next=body["next"]) == (200, {"studies": [], "next": None})
    assert listing(sites, SITE_A[0], next=body["next"])[1]["studies"][0]["study_id"] == first
    # a token naming an owner is an admin's: refused to an owner, and an owner's to an admin
    forged = encode_cursor(ListCursor(2_000_000_000, theirs, owner="site-b"))
    assert listing(sites, SITE_A[0], next=forged)[0] == 400
    assert listing(sites, API_TOKEN, next=body["next"])[0] == 400


@pytest.mark.parametrize("query", [
    {"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"limit": "-1"},
    {"next": "not-a-token"}, {"next": "x" * 5000},
    {"next": encode_cursor(ListCursor(1, "not-a-study-id"))},
    {"next": encode_cursor(ListCursor(10**15, "0" * 32))},
    {"study_instance_uid": "1.2.abc"}, {"study_instance_uid": "1." * 40 + "1"},
    {"study_instance_uid": ""},
])
def test_what_the_listing_does_not_take_is_400(stack: Stack, query: dict[str, str]) -> None:
    status, body = listing(stack, **query)
    assert status == 400, body


def test_a_judged_study_is_found_by_its_study_instance_uid(stack: Stack) -> None:
    study = run_study(stack, {"ct.dcm": CT_SMALL})
    declare(stack, API_TOKEN)  # another study, not judged: listed by no UID yet
    status, body = listing(stack, study_instance_uid=CT_SMALL_UID)
    assert status == 200 and body["next"] is None
    [entry] = body["studies"]
    assert entry["study_id"] == study
    assert (entry["study_instance_uid"], entry["study_instance_uids"]) == (CT_SMALL_UID, 1)
    assert entry["state"] == "STORED" and entry["counts"]["valid"] == 1
    assert listing(stack, study_instance_uid="1.2.3") == (200, {"studies": [], "next": None})


def test_a_search_reads_a_bounded_number_of_rows_and_pages_on(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(study_listing, "ROWS_READ_AT_MOST", 2)
    study = run_study(stack, {"ct.dcm": CT_SMALL})
    for _ in range(4):
        declare(stack, API_TOKEN)
    pages = every_page(stack, study_instance_uid=CT_SMALL_UID)
    assert len(pages) >= 3 and list(itertools.chain(*pages)) == [study]


def test_a_listing_is_audited_once_without_the_uid_it_looked_for(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    listing(stack, study_instance_uid=CT_SMALL_UID)
    assert [r.audit for r in caplog.records if r.getMessage() == "audit"] == [
        {"caller": "initial", "study_id": None, "action": "list", "outcome": "ok"}]
    assert CT_SMALL_UID not in repr([vars(record) for record in caplog.records])
