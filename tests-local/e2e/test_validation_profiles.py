"""The strict profile on the deployed stack: the validator switched to it, as deploying with
``ValidationProfile=strict`` does, rejects the bytes ``test_conformance_warnings.py`` stores,
naming each conformance error with its path. Its own module, named to run last, so that the
other tests never meet a validator between two configurations."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import ROOT, STACK_NAME, Deployment, aws
from test_conformance_warnings import conformance_findings, nonconformant_ct

pytestmark = pytest.mark.e2e

VALIDATOR = f"{STACK_NAME}-validator"


def _set_profile(profile: str) -> None:
    """The validator's VALIDATION_PROFILE changed, once its new version answers (as
    ``test_faults.set_environment`` waits), so that the next upload meets that profile."""
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


def test_the_strict_profile_rejects_the_same_study_naming_each_error(
        deployment: Deployment, strict_validator: None) -> None:
    study_id = deployment.api.upload({"ct.dcm": nonconformant_ct()})
    status = deployment.api.wait(study_id)

    assert (status["state"], status["status"]) == ("REJECTED", 422)
    errors = {(rule, path) for rule, severity, path in conformance_findings(status)
              if severity == "error"}
    assert errors == {("conformance.enumerated-value", "PatientSex"),
                      ("conformance.missing-type1", "ProcedureCodeSequence[1]/CodeMeaning")}
    assert deployment.keys(deployment.store_bucket, f"studies/{study_id}/") == []
    log = deployment.read(deployment.store_bucket, f"rejected/{study_id}/validation.log")
    assert b"conformance.enumerated-value" in log and b"PatientSex" in log
