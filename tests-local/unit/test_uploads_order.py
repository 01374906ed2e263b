"""How uploads of one key are ordered, and how an upload kept aside shows in the status."""

from __future__ import annotations

import json

from pacs_validator.contract.objects import is_later
from pacs_validator.contract.status_view import FilePage, has_kept_aside, public_view
from pacs_validator.dicom.data import data_document


def test_sequencers_compare_as_s3_documents_after_left_padding() -> None:
    assert is_later("0B", "0A")
    assert is_later("100", "FF")  # shorter values are padded with leading zeros
    assert is_later("0055D4DEF6ED1E6A0C", "55D4DEF6ED1E6A0B")
    assert not is_later("0A", "0A")
    assert not is_later("0a", "0A")  # hexadecimal: case does not matter
    assert not is_later("FF", "100")


def test_uploads_kept_aside_show_with_a_finding_on_the_first_page_only() -> None:
    study = {"study_id": "s", "state": "STORED", "expected": 2, "received": 2,
             "late_uploads": 3, "counts": {"instances": 2}}
    aside = [{"name": "a.dcm", "outcome": "late", "uploads": 3,
              "last": {"status": 400, "key_version": "0C"}}]
    first = public_view(study, FilePage([], None, aside))
    later = public_view(study, FilePage([], None))

    assert has_kept_aside(study) and not has_kept_aside({"state": "STORED"})
    assert first["counts"] == {"declared": 2, "received": 2, "late": 3, "instances": 2}
    [shown] = first["kept_aside"]
    assert shown["finding"]["rule"] == "upload.replaced-after-judgment"
    assert shown["last"]["status"] == 400
    assert "kept_aside" not in later
    assert "a.dcm" not in json.dumps(later)


def test_the_rules_of_uploads_kept_aside_are_documented_rules() -> None:
    rules = data_document("rules.json")
    for outcome in ("late", "undeclared"):
        rule = public_view({"study_id": "s", "state": "STORED"}, FilePage([], None, [
            {"name": "x", "outcome": outcome}]))["kept_aside"][0]["finding"]["rule"]
        assert rules[rule]["severity"] == "warning"
