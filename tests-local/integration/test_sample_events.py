"""Every file in events/ is a valid event for its function (they feed `stack invoke`)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
from aws_lambda_powertools.utilities import parameters
from conftest import ROOT, TOKENS_SECRET, UPLOADS, FakeContext, Stack
from pydicom.data import get_testdata_file

EVENTS = ROOT / "events"
SAMPLE_EVENT_TOKEN = "sample-event-token-0123456789"


def load(name: str) -> dict[str, object]:
    event: dict[str, object] = json.loads((EVENTS / name).read_text())
    return event


def test_api_sample_events_get_their_documented_answers(stack: Stack) -> None:
    """The events carry ``Bearer sample-event-token-0123456789``: a deployed stack answers
    them 401 until that token is put in its token secret (docs/api.md, Sample events)."""
    boto3.client("secretsmanager").put_secret_value(
        SecretId=TOKENS_SECRET, SecretString=json.dumps({"samples": SAMPLE_EVENT_TOKEN}))
    parameters.clear_caches()
    api = stack.handler("api")
    answers = {name: api.lambda_handler(load(name), FakeContext())["statusCode"]
               for name in ("api-upload.json", "api-upload-single.json", "api-status.json",
                            "api-health.json", "api-upload-page.json")}
    assert answers == {"api-upload.json": 201, "api-upload-single.json": 201,
                       "api-status.json": 404, "api-health.json": 200,
                       "api-upload-page.json": 200}


def test_validator_sample_events_process_a_real_upload(stack: Stack) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    for name in ("validator-s3-put.json", "validator-s3-plain-drop.json"):
        event = load(name)
        key = event["Records"][0]["s3"]["object"]["key"]  # type: ignore[index]
        stack.s3.put_object(Bucket=UPLOADS, Key=key, Body=data)
        result = stack.handler("validator").lambda_handler(event, FakeContext())
        assert result["processed"][0]["status"] == 200
    assert stack.handler("validator").lambda_handler(
        load("validator-schedule.json"), FakeContext()) == {"handed_out": []}
    assert stack.handler("validator").lambda_handler(  # a batch of a study that is not there
        load("validator-sweep-batch.json"), FakeContext()) == {
        "incomplete": [], "failed": [], "handed_back": []}


def test_descriptor_sample_events_for_an_unknown_study_store_nothing(stack: Stack) -> None:
    descriptor = stack.handler("descriptor")
    assert descriptor.lambda_handler(load("descriptor-validation-success.json"),
                                     FakeContext()) == {
        "study_id": "0123456789abcdef0123456789abcdef", "stored": False}
    assert descriptor.lambda_handler(load("descriptor-chunk.json"), FakeContext()) == {
        "study_id": "0123456789abcdef0123456789abcdef", "chunk": 0, "stored": False}
