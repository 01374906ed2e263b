"""Conformance on the deployed stack: dciodvfy runs from the core layer in the validator, and
the default profile stores a study with its conformance warnings named and located
(``test_validation_profiles.py`` rejects the same bytes under the strict profile)."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from conftest import Deployment
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

pytestmark = pytest.mark.e2e


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


def conformance_findings(status: dict) -> set[tuple[str, str, str]]:
    return {(f["rule"], f["severity"], f.get("path", "")) for f in status["files"][0]["findings"]
            if f["rule"].startswith("conformance.")}


def test_the_default_profile_stores_a_study_with_named_conformance_warnings(
        deployment: Deployment) -> None:
    study_id = deployment.api.upload({"ct.dcm": nonconformant_ct()})
    status = deployment.api.wait(study_id)

    assert (status["state"], status["status"]) == ("STORED", 200)
    found = conformance_findings(status)
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
