"""The status table compares patient values across a study by fingerprints that cannot be
reversed: an attacker holding the table (and the StudyInstanceUID each item carries) tries
every likely value, as a brute force does in under a second against a salted plain hash, and
matches none without the deployment's key."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

import boto3
import pydicom
from boto3.dynamodb.conditions import Key
from conftest import STATUS_TABLE, Stack
from test_pipeline import MR_STUDY, run_study

from pacs_validator.aws.file_records import FILE_PREFIX, record_of

PATIENT_KEYWORDS = ("PatientID", "PatientBirthDate", "PatientSex", "PatientName")


def birth_dates() -> list[str]:
    """Every day of 1900 to 2026: the whole space of a birth date."""
    first = datetime.date(1900, 1, 1)
    return [(first + datetime.timedelta(days=n)).strftime("%Y%m%d")
            for n in range((datetime.date(2026, 12, 31) - first).days + 1)]


def candidates(dataset: pydicom.Dataset) -> dict[str, list[str]]:
    """What a brute force tries for each attribute: its whole space where it is small, and,
    so that a miss cannot be luck, the study's true value among them."""
    truth = {k: str(dataset.get(k, "")).strip().upper() for k in PATIENT_KEYWORDS}
    return {
        "PatientBirthDate": [*birth_dates(), truth["PatientBirthDate"]],
        "PatientSex": ["M", "F", "O", truth["PatientSex"]],
        "PatientID": [*(f"{n:06d}" for n in range(100_000)), truth["PatientID"]],
        "PatientName": [truth["PatientName"]],
    }


def salted_hash(salt: str, text: str) -> str:
    return hashlib.sha256(f"{salt}\x00{text}".encode()).hexdigest()[:32]


def file_records(study_id: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(STATUS_TABLE)
    items = table.query(KeyConditionExpression=Key("study_id").eq(study_id)
                        & Key("item").begins_with(FILE_PREFIX))["Items"]
    return [record_of(item) for item in items]


def test_no_patient_fingerprint_in_the_status_table_yields_to_a_brute_force(
        stack: Stack) -> None:
    files = {path.name: path.read_bytes() for path in MR_STUDY[:3]}
    study_id = run_study(stack, files)
    dataset = pydicom.dcmread(MR_STUDY[0], stop_before_pixels=True)
    tries = candidates(dataset)

    records = file_records(study_id)
    assert len(records) == 3
    tried = 0
    for record in records:
        summary = record["summary"]
        salt = summary["study_instance_uid"]
        assert salt == dataset.StudyInstanceUID  # the salt is there for the taking ...
        for keyword, fingerprint in summary["fingerprints"].items():
            guesses = tries.get(keyword, [])
            tried += len(guesses)
            found = [g for g in guesses if salted_hash(salt, g) == fingerprint]
            assert not found, keyword  # ... and no guess, the true value included, matches
    assert tried > 3 * 100_000  # PatientID and PatientBirthDate were both fingerprinted


def test_the_key_digest_of_an_event_does_not_confirm_a_guessed_name(stack: Stack) -> None:
    name = Path(MR_STUDY[0]).name
    study_id = run_study(stack, {name: MR_STUDY[0].read_bytes()})
    uploaded = [e["detail"] for e in stack.published() if e["detail-type"] == "study.uploaded"]
    digest = uploaded[0]["key_digest"]
    key = f"incoming/{study_id}/{name}"
    assert hashlib.sha256(key.encode()).hexdigest()[:24] != digest
