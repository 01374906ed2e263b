"""A declaration with a client token, sent again through the local stack's HTTP API, names
the study the first one made: the way a client that lost the first answer makes no second
study."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from pacs_validator.transfer.client import ApiError, PacsClient, request

pytestmark = pytest.mark.e2e

CT_SMALL = Path(get_testdata_file("CT_small.dcm")).read_bytes()


def post_upload(api: PacsClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """``POST /upload`` as sent, the status and body as answered (no retry, no check)."""
    response = request("POST", api.api_base + "/upload", json.dumps(body).encode(),
                       {"Content-Type": "application/json",
                        "Authorization": f"Bearer {api.token}"})
    return response.status, response.json()


def test_a_declaration_sent_again_with_its_token_names_the_first_study(
        two_sites: dict[str, PacsClient]) -> None:
    site_a, site_b = two_sites["site-a"], two_sites["site-b"]
    token = f"e2e.{uuid.uuid4().hex}"
    body = {"files": [{"name": "ct.dcm", "size": len(CT_SMALL)}], "client_token": token}

    status, first = post_upload(site_a, body)
    assert status == 201, first
    status, again = post_upload(site_a, body)
    assert (status, again["study_id"]) == (200, first["study_id"])
    assert site_a.declare({"ct.dcm": len(CT_SMALL)}, client_token=token)["study_id"] == \
        first["study_id"]
    with pytest.raises(ApiError) as refused:
        site_a.declare({"ct.dcm": len(CT_SMALL) + 1}, client_token=token)
    assert refused.value.status == 409
    theirs = site_b.declare({"ct.dcm": len(CT_SMALL)}, client_token=token)["study_id"]
    assert theirs != first["study_id"]

    [form] = again["uploads"]  # the forms of the answer sent again upload the study
    site_a.send_file(form, "ct.dcm", CT_SMALL)
    assert site_a.wait(first["study_id"])["state"] == "STORED"
    status, stored = post_upload(site_a, body)
    assert (status, stored["study_id"], stored["uploads"]) == (200, first["study_id"], [])

