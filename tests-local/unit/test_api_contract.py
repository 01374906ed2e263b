"""The contract documents themselves: the OpenAPI document is valid and agrees with the
package's schemas and data, and the checks that hold answers and documents to them refuse
what they must (so a test that passes through them could fail)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_contract import ContractViolation, answer_problems, check_answer, spec
from document_schemas import (
    FINDING,
    METADATA,
    SCHEMA_NAMES,
    VALIDATION_REPORT,
    problems,
    shipped_schema,
    validator,
)
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from pacs_validator.contract.upload_request import CLIENT_TOKEN, TokenReused
from pacs_validator.dicom.data import data_document

SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Content-Type": "application/json"}
STUDY_ID = "0123456789abcdef0123456789abcdef"
FINDING_EXAMPLE = {"rule": "required.missing", "severity": "error", "status": 422,
                   "message": "required attribute missing: PatientID", "tag": "(0010,0020)",
                   "keyword": "PatientID"}


def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    assert spec()["openapi"].startswith("3.1")
    validate(spec())


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_shipped_schema_is_a_valid_2020_12_schema(name: str) -> None:
    Draft202012Validator.check_schema(shipped_schema(name))


def constraints(schema: Any) -> Any:
    """A schema without its annotations (identifiers, titles, descriptions)."""
    if isinstance(schema, dict):
        return {k: constraints(v) for k, v in schema.items()
                if k not in ("$schema", "$id", "title", "description")}
    return schema


def test_the_api_finding_is_the_packages_finding() -> None:
    documented = spec()["components"]["schemas"]["Finding"]
    assert constraints(documented) == constraints(shipped_schema(FINDING))


def test_every_rule_of_the_catalogue_makes_findings_the_schema_admits() -> None:
    for rule, entry in data_document("rules.json").items():
        finding = {**FINDING_EXAMPLE, "rule": rule, "severity": entry["severity"],
                   "status": entry["status"]}
        assert problems(FINDING, finding) == [], rule


def test_metadata_sections_are_exactly_the_fields_of_the_metadata_map() -> None:
    mapping, schema = data_document("metadata_map.json"), shipped_schema(METADATA)
    sections = {**schema["properties"], **schema["$defs"]}
    for section in ("patient", "study", "equipment", "exposure", "institution", "series",
                    "instance"):
        fields = set(sections[section]["properties"])
        assert set(mapping[section]) <= fields, section
        assert set(sections[section]["required"]) == fields, section
    assert schema["properties"]["schema_version"]["const"] == mapping["schema_version"]


def test_a_finding_with_another_field_or_severity_is_refused() -> None:
    assert problems(FINDING, {**FINDING_EXAMPLE, "value": "Doe^John"})
    assert problems(FINDING, {**FINDING_EXAMPLE, "severity": "fatal"})
    assert problems(FINDING, {k: v for k, v in FINDING_EXAMPLE.items() if k != "tag"})


def test_a_report_whose_validity_disagrees_with_its_status_is_refused() -> None:
    entry = {"path": "a.dcm", "valid": True, "status": 422, "findings": [FINDING_EXAMPLE]}
    assert problems(VALIDATION_REPORT, {"files": [entry], "studies": []})
    assert not problems(VALIDATION_REPORT, {"files": [{**entry, "valid": False}],
                                            "studies": []})
    assert validator(VALIDATION_REPORT) is validator(VALIDATION_REPORT)


def test_the_functions_error_answer_conforms_and_a_bare_message_does_not() -> None:
    error = json.dumps({"statusCode": 404, "message": "no such study"}).encode()
    check_answer("GET", f"/status/{STUDY_ID}", 404, SECURITY, error, through_gateway=True)
    bare = json.dumps({"message": "no such study"}).encode()
    with pytest.raises(ContractViolation, match="statusCode"):
        check_answer("GET", f"/status/{STUDY_ID}", 404, SECURITY, bare, through_gateway=True)


def test_an_undeclared_status_missing_header_or_media_type_is_a_violation() -> None:
    health = b'{"status":"ok"}'
    assert answer_problems("GET", "/health", 200, SECURITY, health, through_gateway=True) == []
    assert answer_problems("GET", "/health/", 200, SECURITY, health, through_gateway=True) == []
    assert answer_problems("GET", "/health", 404, SECURITY, health, through_gateway=True)
    no_sniffing = {k: v for k, v in SECURITY.items() if k != "X-Content-Type-Options"}
    assert answer_problems("GET", "/health", 200, no_sniffing, health, through_gateway=True)
    as_text = {**SECURITY, "Content-Type": "text/plain"}
    assert answer_problems("GET", "/health", 200, as_text, health, through_gateway=True)
    assert answer_problems("GET", "/health", 200, SECURITY, b'{"status":"ok","x":1}',
                           through_gateway=True)


def test_unrouted_requests_are_held_to_the_gateways_or_the_functions_answer() -> None:
    gateway = b'{"message": "Missing Authentication Token"}'
    headers = {"Content-Type": "application/json"}
    assert answer_problems("DELETE", "/upload", 403, headers, gateway,
                           through_gateway=True) == []
    assert answer_problems("DELETE", "/upload", 403, headers, gateway, through_gateway=False)
    refused = b'{"statusCode":405,"message":"method not allowed"}'
    assert answer_problems("DELETE", "/upload", 405, {**SECURITY, "Allow": "POST"}, refused,
                           through_gateway=False) == []
    assert answer_problems("DELETE", "/upload", 405, SECURITY, refused, through_gateway=False)


def test_the_documented_client_token_is_the_one_the_api_takes() -> None:
    documented = spec()["components"]["schemas"]["ClientToken"]["pattern"]
    assert documented == f"^{CLIENT_TOKEN.pattern}$"


def test_a_declaration_made_again_may_have_no_forms_where_a_new_study_may_not() -> None:
    no_forms = json.dumps({"study_id": STUDY_ID, "expires_in": 0, "max_bytes": 10,
                           "files": 1, "uploads": []}).encode()
    assert answer_problems("POST", "/upload", 200, SECURITY, no_forms,
                           through_gateway=True) == []
    assert answer_problems("POST", "/upload", 201, SECURITY, no_forms, through_gateway=True)


def test_a_reused_token_answers_409_with_its_rule_and_a_bare_409_is_refused() -> None:
    reused = {"statusCode": 409, "rule": TokenReused.rule, "message": str(TokenReused())}
    assert answer_problems("POST", "/upload", 409, SECURITY, json.dumps(reused).encode(),
                           through_gateway=True) == []
    bare = json.dumps({"statusCode": 409, "message": "closed"}).encode()
    assert answer_problems("POST", "/upload", 409, SECURITY, bare, through_gateway=True)
