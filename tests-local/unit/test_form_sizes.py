"""Upload forms as large as AWS makes them: signed with a Lambda role's session token (in
each form's fields and policy) for the longest names, the answers stay within their bounds:
the ``POST /upload`` answer under 64 KB, a ``POST /upload/{id}`` answer of the most forms one
request may ask for well under the 6 MB a Lambda function may answer."""

from __future__ import annotations

import json
from typing import Any

import boto3

from pacs_validator.aws.s3 import S3Bucket
from pacs_validator.contract.keys import incoming_key, incoming_prefix
from pacs_validator.contract.upload_request import NAMES_PER_FORM_REQUEST
from pacs_validator.dicom.data import data_document

SESSION_TOKEN = "IQoJb3JpZ2luX2Vj" + "x" * 1084
"""As long as a Lambda function role's session token (about 1,100 characters)."""
STUDY_ID = "0123456789abcdef0123456789abcdef"
LONGEST_NAME = "N" * 128
"""The longest name a declaration keeps (``safe_name``)."""


class SessionClients:
    """The adapters' client factory, its S3 client signing with temporary credentials."""

    def __init__(self) -> None:
        self.client = boto3.client(
            "s3", region_name="eu-west-1", aws_access_key_id="ASIAEXAMPLEEXAMPLE12",
            aws_secret_access_key="secret", aws_session_token=SESSION_TOKEN)

    def s3(self) -> Any:
        return self.client


def uploads_bucket() -> S3Bucket:
    clients: Any = SessionClients()
    return S3Bucket("pacs-validator-uploads-123456789012", clients)


def forms(count: int) -> list[dict[str, Any]]:
    bucket = uploads_bucket()
    return [{"name": LONGEST_NAME, **bucket.presigned_post(
        incoming_key(STUDY_ID, LONGEST_NAME), 2**30, 900, min_bytes=2**30)}
        for _ in range(count)]


def test_the_declarations_answer_stays_under_64_kb_with_the_study_wide_form_too() -> None:
    first = data_document("pipeline.json")["per_file_forms_max"]
    study_wide = uploads_bucket().presigned_post(
        incoming_prefix(STUDY_ID) + "${filename}", 2**30, 900)
    answer = {"study_id": STUDY_ID, "expires_in": 900, "max_bytes": 2**30, "files": 20_000,
              "uploads": forms(first), "upload": {**study_wide,
                                                  "key_prefix": incoming_prefix(STUDY_ID)}}

    assert SESSION_TOKEN in answer["uploads"][0]["fields"].values()
    assert len(json.dumps(answer)) <= 64 * 1024


def test_an_answer_of_the_most_forms_one_request_asks_for_stays_under_512_kb() -> None:
    answer = {"study_id": STUDY_ID, "expires_in": 900, "max_bytes": 2**30, "files": 20_000,
              "uploads": forms(NAMES_PER_FORM_REQUEST)}

    assert len(json.dumps(answer)) <= 512 * 1024
