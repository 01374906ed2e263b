"""Configuration: severities, switches and required attributes are data a deployment overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pacs_validator
from pacs_validator.dicom.config import ConfigError, build_config, load_config
from pacs_validator.dicom.rules import rule_ids

STRICT = Path(pacs_validator.__file__).parent / "data" / "strict.json"
WITHOUT_ENGINE = {"conformance": {"enabled": False}}
"""These tests judge the validator's own rules (the IOD table's among them): without dciodvfy,
whose findings ``test_conformance.py`` judges."""


def own_rules(document: dict) -> object:
    return build_config({**WITHOUT_ENGINE, **document})


def strict_own_rules() -> object:
    return own_rules(json.loads(STRICT.read_text()))

LIVER = "liver_1frame.dcm"  # a real Segmentation without NumberOfFrames (Type 1 in its IOD)


def rules(result) -> set[str]:
    return {f.rule for f in result.findings}


def test_real_segmentation_missing_type1_number_of_frames_is_a_warning_by_default(corpus,
                                                                                  validate):
    assert "NumberOfFrames" not in corpus.read(corpus.path(LIVER), pixels=False)
    result = validate(corpus.path(LIVER))
    assert result.status == 200
    type1 = [f for f in result.findings if f.rule == "iod.type1"]
    assert [(f.keyword, f.severity.value) for f in type1] == [("NumberOfFrames", "warning")]


def test_iod_type1_configured_as_error_turns_the_warning_into_422(corpus, validate):
    strict = own_rules({"rules": {"iod.type1": {"severity": "error"}}})
    result = validate(corpus.path(LIVER), strict)
    assert result.status == 422
    type1 = [f for f in result.findings if f.rule == "iod.type1"]
    assert [(f.keyword, f.severity.value, f.status) for f in type1] == [
        ("NumberOfFrames", "error", 422)
    ]


def test_strict_iod_type1_does_not_affect_a_complete_file(corpus, validate):
    strict = own_rules({"rules": {"iod.type1": {"severity": "error"}}})
    assert validate(corpus.path("CT_small.dcm"), strict).status == 200


def test_disabled_rule_reports_nothing(corpus, mutate, validate):
    quiet = own_rules({"rules": {"iod.type1": {"enabled": False}}})
    assert "iod.type1" not in rules(validate(corpus.path(LIVER), quiet))
    no_dates = own_rules({"rules": {"value.date": {"enabled": False}}})
    bad_date = mutate("MR_small.dcm", lambda ds: setattr(ds, "StudyDate", "20231340"))
    assert validate(bad_date).status == 422
    result = validate(bad_date, no_dates)
    assert result.status == 200
    assert "value.date" not in rules(result)


def test_rule_status_can_be_overridden(mutate, validate):
    cfg = own_rules({"rules": {"value.date": {"status": 400}}})
    bad_date = mutate("MR_small.dcm", lambda ds: setattr(ds, "StudyDate", "20231340"))
    assert validate(bad_date, cfg).status == 400


def test_error_downgraded_to_warning_keeps_the_file_valid(mutate, validate):
    lenient = own_rules({"rules": {"meta.sop-instance-mismatch": {"severity": "warning"}}})

    def edit(ds):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".9"

    path = mutate("MR_small.dcm", edit)
    assert validate(path).status == 422
    assert validate(path, lenient).status == 200


def test_required_attributes_override_adds_an_attribute(corpus, validate):
    cfg = own_rules({"required_attributes": ["PatientID", "SOPInstanceUID", "BodyPartExamined"]})
    assert "BodyPartExamined" not in corpus.read(corpus.path("MR_small.dcm"), pixels=False)
    result = validate(corpus.path("MR_small.dcm"), cfg)
    assert result.status == 422
    required = [f for f in result.findings if f.rule == "attribute.required"]
    assert [(f.keyword, f.tag) for f in required] == [("BodyPartExamined", "(0018,0015)")]


def test_required_attributes_override_drops_an_attribute(mutate, validate):
    cfg = own_rules({"required_attributes": ["PatientID", "StudyInstanceUID",
                                                "SeriesInstanceUID", "SOPInstanceUID",
                                                "SOPClassUID", "Modality"]})
    path = mutate("MR_small.dcm", lambda ds: delattr(ds, "StudyDate"))
    assert validate(path).status == 422
    result = validate(path, cfg)
    # StudyDate is still Type 2 in the General Study module: a warning, not an error.
    assert result.status == 200
    assert "attribute.required" not in rules(result)
    assert [f.keyword for f in result.findings if f.rule == "iod.type2"] == ["StudyDate"]


@pytest.mark.parametrize("document", [
    {"rules": {"no.such-rule": {"enabled": False}}},
    {"no_such_key": 1},
    {"required_attributes": ["PatientID", "NotADicomKeyword"]},
    {"checked_dates": ["StudyDat"]},
    {"rules": {"value.date": {"severity": "fatal"}}},
    {"max_bytes": 0},
    {"max_bytes": "big"},
])
def test_malformed_configuration_is_a_config_error(document):
    with pytest.raises(ConfigError):
        build_config(document)


def test_configuration_file_is_loaded(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"rules": {"iod.type1": {"severity": "error"}}}))
    assert load_config(path).rules["iod.type1"].severity.value == "error"
    assert load_config(None).rules["iod.type1"].severity.value == "warning"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"rules"'])
def test_unreadable_configuration_file_is_a_config_error(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path)


def test_missing_configuration_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.json")


def test_every_rule_has_a_stable_dotted_id_and_a_contract_status():
    ids = rule_ids()
    assert len(ids) == len(set(ids))
    cfg = own_rules({})
    for rule_id in ids:
        family, _, name = rule_id.partition(".")
        assert family and name, rule_id
        rule = cfg.rules[rule_id]
        assert rule.status in (400, 413, 422) or (rule_id, rule.status) == ("internal.error", 500)
        assert rule.severity.value in ("error", "warning")




@pytest.mark.parametrize(("keyword", "value", "rule"), [
    ("ReasonForStudy", "X" * 65, "value.other-vr-length"),
    ("PatientBirthDate", "19991399", "value.other-date"),
    ("PatientAge", "045X", "value.other-vr-format"),
    ("FrameOfReferenceUID", "1.02.3", "value.other-uid"),
])
def test_strict_profile_makes_value_problems_of_any_attribute_errors(keyword, value, rule,
                                                                     mutate, validate):
    path = mutate("MR_small.dcm", lambda ds: setattr(ds, keyword, value))
    default = validate(path)
    assert default.status == 200
    assert rule in rules(default)
    strict = validate(path, strict_own_rules())
    assert strict.status == 422
    assert [f.severity.value for f in strict.findings if f.rule == rule] == ["error"]


def test_strict_profile_rejects_trailing_padding(corpus, tmp_path, validate):
    padded = tmp_path / "padded.dcm"
    padded.write_bytes(corpus.path("CT_small.dcm").read_bytes() + bytes(32))
    assert validate(padded).status == 200
    assert validate(padded, strict_own_rules()).status == 422


def test_strict_profile_keeps_sound_real_files_valid(corpus, validate):
    strict = strict_own_rules()
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_bigendian.dcm"):
        assert validate(corpus.path(name), strict).status == 200, name
