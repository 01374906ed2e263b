"""Conformance on the deployed stack: dciodvfy runs from the core layer's bin/ in the validator;
the default profile stores a study with conformance warnings, and the strict profile (the
``ValidationProfile`` parameter, i.e. the validator's ``VALIDATION_PROFILE``) rejects the same
bytes, naming each conformance error with its path."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import pydicom
import pytest
from conftest import ROOT, STACK_NAME, Deployment, aws
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

pytestmark = pytest.mark.e2e

VALIDATOR = f"{STACK_NAME}-validator"


def nonconformant_ct() -> bytes:
    """A real CT with two conformance errors pydicom reads happily: an unknown PatientSex
    (enumerated value) and a procedure code without its Type 1 CodeMeaning (nested)."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PatientSex = "X"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "P1", "DCM"
    dataset.ProcedureCodeSequence = [code]
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def _set_profile(profile: str) -> None:
    """The validator's VALIDATION_PROFILE changed, once its new version answers: events sent
    while LocalStack swaps versions can be lost (as ``test_faults.set_environment`` waits)."""
    functions = aws("lambda")
    variables = functions.get_function_configuration(
        FunctionName=VALIDATOR)["Environment"]["Variables"]
    functions.update_function_configuration(
        FunctionName=VALIDATOR,
        Environment={"Variables": {**variables, "VALIDATION_PROFILE": profile}})
    probe = (ROOT / "events" / "validator-schedule.json").read_bytes()
    deadline = time.monotonic() + 60
    while (functions.get_function_configuration(FunctionName=VALIDATOR)
           .get("LastUpdateStatus") not in ("Successful", None)
           or "FunctionError" in functions.invoke(FunctionName=VALIDATOR, Payload=probe)):
        assert time.monotonic() < deadline, "the validator's new version did not answer"
        time.sleep(0.5)


@pytest.fixture
def strict_validator() -> Iterator[None]:
    """The validator redeployed with the strict profile, as the parameter would, then back."""
    _set_profile("strict")
    try:
        yield
    finally:
        _set_profile("default")


def _conformance(status: dict) -> set[tuple[str, str, str]]:
    return {(f["rule"], f["severity"], f.get("path", "")) for f in status["files"][0]["findings"]
            if f["rule"].startswith("conformance.")}


def test_the_default_profile_stores_a_study_with_named_conformance_warnings(
        deployment: Deployment) -> None:
    study_id = deployment.api.upload({"ct.dcm": nonconformant_ct()})
    status = deployment.api.wait(study_id)

    assert (status["state"], status["status"]) == ("STORED", 200)
    found = _conformance(status)
    assert {("conformance.enumerated-value", "warning", "PatientSex"),
            ("conformance.missing-type1", "warning",
             "ProcedureCodeSequence[1]/CodeMeaning")} <= found
    assert "conformance.not-run" not in {rule for rule, _, _ in found}
    report = json.loads(deployment.read(deployment.store_bucket,
                                        f"studies/{study_id}/validation.json"))
    stored = report["files"][0]["findings"]
    enumerated = next(f for f in stored if f["rule"] == "conformance.enumerated-value")
    assert enumerated["iod"] == "CTImage"
    assert enumerated["detail"].startswith("Error - Unrecognized enumerated value")
    assert "<X>" not in enumerated["message"]
    events = json.dumps(deployment.events_for(study_id, until="study.processed"))
    assert "Unrecognized enumerated value" not in events  # details stay out of events


def test_the_strict_profile_rejects_the_same_study_naming_each_error(
        deployment: Deployment, strict_validator: None) -> None:
    study_id = deployment.api.upload({"ct.dcm": nonconformant_ct()})
    status = deployment.api.wait(study_id)

    assert (status["state"], status["status"]) == ("REJECTED", 422)
    errors = {(rule, path) for rule, severity, path in _conformance(status)
              if severity == "error"}
    assert errors == {("conformance.enumerated-value", "PatientSex"),
                      ("conformance.missing-type1", "ProcedureCodeSequence[1]/CodeMeaning")}
    assert deployment.keys(deployment.store_bucket, f"studies/{study_id}/") == []
    log = deployment.read(deployment.store_bucket, f"rejected/{study_id}/validation.log")
    assert b"conformance.enumerated-value" in log and b"PatientSex" in log
