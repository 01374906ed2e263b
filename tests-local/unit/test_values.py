"""Attribute presence and values: parseable files whose content breaks the rules are 422."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from crafted import with_raw_value
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

import pacs_validator
from pacs_validator.dicom.config import build_config
from pacs_validator.dicom.rules import format_tag

REQUIRED = ["PatientID", "StudyDate", "Modality", "StudyInstanceUID", "SeriesInstanceUID",
            "SOPInstanceUID", "SOPClassUID"]


def findings_of(result, rule: str) -> list:
    return [f for f in result.findings if f.rule == rule]


def error_rules(result) -> set[str]:
    return {f.rule for f in result.findings if f.severity.value == "error"}


def dicom_tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def test_format_tag_writes_tags_the_dicom_way():
    assert format_tag(0x00100020) == "(0010,0020)"
    assert format_tag(0x7FE00010) == "(7FE0,0010)"


# --- required attributes -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "JPEG2000.dcm"])
@pytest.mark.parametrize("keyword", REQUIRED)
def test_deleted_required_attribute_is_422_naming_keyword_and_tag(name, keyword, mutate,
                                                                  validate):
    result = validate(mutate(name, lambda ds: delattr(ds, keyword)))
    assert result.status == 422
    required = findings_of(result, "attribute.required")
    assert [(f.keyword, f.tag) for f in required] == [(keyword, dicom_tag(keyword))]
    assert required[0].severity.value == "error"
    assert required[0].status == 422
    assert keyword in required[0].message


@pytest.mark.parametrize("keyword", ["PatientID", "StudyDate", "Modality", "StudyInstanceUID"])
def test_emptied_required_attribute_is_422(keyword, mutate, validate):
    result = validate(mutate("CT_small.dcm", lambda ds: setattr(ds, keyword, "")))
    assert result.status == 422
    assert [f.keyword for f in findings_of(result, "attribute.required")] == [keyword]


def test_required_attribute_of_only_spaces_is_empty(mutate, validate):
    result = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, "PatientID", "    ")))
    assert result.status == 422
    assert [f.keyword for f in findings_of(result, "attribute.required")] == ["PatientID"]


def test_optional_attribute_deleted_keeps_the_file_valid(mutate, validate):
    # InstitutionName is Type 3 in the General Equipment module: its absence is no defect.
    result = validate(mutate("CT_small.dcm", lambda ds: delattr(ds, "InstitutionName")))
    assert result.status == 200
    assert not result.findings


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("date", ["20231340", "2023-01-01", "20230229", "20230431", "20230000",
                                  "2023010", "abcdefgh"])
def test_study_date_that_is_not_a_real_yyyymmdd_date_is_422(date, mutate, validate):
    result = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, "StudyDate", date)))
    assert result.status == 422
    dates = findings_of(result, "value.date")
    assert [(f.keyword, f.tag) for f in dates] == [("StudyDate", "(0008,0020)")]
    assert date not in dates[0].message


@pytest.mark.parametrize("date", ["20240229", "20000229", "19991231", "20230101"])
def test_study_date_that_is_a_real_date_is_valid(date, mutate, validate):
    result = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, "StudyDate", date)))
    assert result.status == 200
    assert not findings_of(result, "value.date")


def test_february_29_of_a_century_not_divisible_by_400_is_not_a_date(mutate, validate):
    result = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, "StudyDate", "19000229")))
    assert findings_of(result, "value.date")


def test_impossible_patient_birth_date_is_a_warning(mutate, validate):
    """Only required attributes reject on their values (as Azure's DICOM service v2)."""
    result = validate(mutate("CT_small.dcm",
                             lambda ds: setattr(ds, "PatientBirthDate", "19991399")))
    assert result.status == 200
    assert [f.keyword for f in findings_of(result, "value.other-date")] == ["PatientBirthDate"]
    assert all(f.severity.value == "warning" for f in result.findings)


def test_checked_date_made_required_rejects(mutate, validate):
    cfg = build_config({"required_attributes": ["PatientID", "PatientBirthDate"]})
    result = validate(mutate("CT_small.dcm",
                             lambda ds: setattr(ds, "PatientBirthDate", "19991399")), cfg)
    assert result.status == 422
    assert [f.keyword for f in findings_of(result, "value.date")] == ["PatientBirthDate"]


def test_required_value_longer_than_its_vr_allows_is_422(mutate, validate):
    too_long = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, "PatientID", "X" * 65)))
    assert too_long.status == 422
    lengths = findings_of(too_long, "value.vr-length")
    assert [(f.keyword, f.severity.value) for f in lengths] == [("PatientID", "error")]
    assert "LO" in lengths[0].message
    at_limit = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, "PatientID", "X" * 64)))
    assert at_limit.status == 200


@pytest.mark.parametrize(("keyword", "vr", "limit"), [
    ("StudyID", "SH", 16),
    ("StationName", "SH", 16),
    ("InstitutionName", "LO", 64),
    ("StudyDescription", "LO", 64),
    ("ReasonForStudy", "LO", 64),
])
def test_other_value_longer_than_its_vr_allows_is_a_warning(keyword, vr, limit, mutate,
                                                             validate):
    too_long = "X" * (limit + 1)
    result = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, keyword, too_long)))
    assert result.status == 200
    lengths = findings_of(result, "value.other-vr-length")
    assert [(f.keyword, f.severity.value) for f in lengths] == [(keyword, "warning")]
    assert vr in lengths[0].message
    at_limit = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, keyword, "X" * limit)))
    assert not at_limit.findings


def test_person_name_component_group_over_64_characters_is_a_warning(mutate, validate):
    result = validate(mutate("MR_small.dcm",
                             lambda ds: setattr(ds, "PatientName", "A" * 65 + "^B")))
    assert result.status == 200
    assert [f.keyword for f in findings_of(result, "value.other-vr-length")] == ["PatientName"]


def test_person_name_made_required_rejects_when_too_long(mutate, validate):
    cfg = build_config({"required_attributes": ["PatientID", "PatientName"]})
    result = validate(mutate("MR_small.dcm",
                             lambda ds: setattr(ds, "PatientName", "A" * 65 + "^B")), cfg)
    assert result.status == 422
    assert [f.keyword for f in findings_of(result, "value.vr-length")] == ["PatientName"]


# --- values that are no whole number of their VR's values --------------------------------

STRICT = json.loads((Path(pacs_validator.__file__).parent / "data" / "strict.json").read_text())


def top(dataset: Dataset) -> Dataset:
    """Where a top-level element is: the data set itself."""
    return dataset


WRONG_WIDTHS = {
    "US of 3 bytes": ("CT_small.dcm", top, "Rows", "US", b"\x80\x00\x00", None, 422),
    "US overwritten as UL": ("CT_small.dcm", top, "Rows", "UL", struct.pack("<H", 128), None, 422),
    "FD of 12 bytes": ("CT_small.dcm", top, "SingleCollimationWidth", "FD", bytes(12), None, 200),
    "UL of 6 bytes": ("MR_small.dcm", top, "GeneratorPower", "UL", bytes(6), None, 200),
    "US in a sequence item": ("liver_1frame.dcm", lambda ds: ds.SegmentSequence[0],
                              "SegmentNumber", "US", b"\x01\x00\x00",
                              "SegmentSequence[1]/SegmentNumber", 200),
    "implicit US, deferred": ("MR_small_implicit.dcm", top, "Rows", None, bytes(65537), None,
                              422),
}
"""Shape -> file, where, keyword, VR written, value, the path a finding names (None: top
level) and the status. A Rows that reads as empty leaves the pixel data uninterpretable
(``pixel.attributes``, 422); the other attributes are no rule's input. The last is over the
read's ``defer_size``: its value stays on disk until a rule reads it."""


@pytest.mark.parametrize("shape", WRONG_WIDTHS)
def test_value_of_no_whole_number_of_its_vrs_values_is_a_warning_naming_it(shape, mutate,
                                                                           validate):
    """Issue 31: such a value (pydicom raises BytesLengthException on reading it) was a 400
    ``format.dataset`` at the top level and in items, a 500 when deferred. It is a value
    length defect: a warning of an attribute that is not required, the element read as
    empty."""
    name, where, keyword, vr, value, path, status = WRONG_WIDTHS[shape]
    result = validate(mutate(name, with_raw_value(where, keyword, vr, value)))
    assert result.status == status
    assert not findings_of(result, "internal.error")
    assert not findings_of(result, "format.dataset")
    widths = findings_of(result, "value.other-vr-length")
    assert [(f.keyword, f.tag, f.path, f.severity.value) for f in widths] == [
        (keyword, dicom_tag(keyword), path, "warning")]
    assert widths[0].message.startswith(f"{path or keyword} holds {len(value)} bytes")
    assert "whole number" in widths[0].message
    if status == 422:
        assert error_rules(result) == {"pixel.attributes"}


def test_value_of_no_whole_number_of_values_is_an_error_in_the_strict_profile(mutate,
                                                                              validate):
    name, where, keyword, vr, value, _, _ = WRONG_WIDTHS["FD of 12 bytes"]
    path = mutate(name, with_raw_value(where, keyword, vr, value))
    strict = validate(path, build_config({**STRICT, "conformance": {"enabled": False}}))
    assert strict.status == 422
    assert [(f.keyword, f.severity.value) for f in findings_of(strict, "value.other-vr-length")
            ] == [(keyword, "error")]


def test_identifying_uid_overwritten_with_a_binary_vr_of_another_width_rejects(corpus, mutate,
                                                                              validate):
    """SOPInstanceUID's VR overwritten with UL: its 46 bytes are no whole number of UL
    values, and a required attribute rejects on its value (``value.vr-length``)."""
    uid = corpus.read(corpus.path("MR_small.dcm"), pixels=False).SOPInstanceUID
    value = uid.encode() + b"\x00" * (len(uid) % 2)
    assert len(value) % 4
    result = validate(mutate("MR_small.dcm", with_raw_value(top, "SOPInstanceUID", "UL", value)))
    assert result.status == 422
    lengths = findings_of(result, "value.vr-length")
    assert [(f.keyword, f.tag, f.severity.value) for f in lengths] == [
        ("SOPInstanceUID", "(0008,0018)", "error")]
    assert uid not in lengths[0].message
    assert not findings_of(result, "internal.error")


# --- file meta agreement -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm"])
def test_media_storage_sop_instance_uid_differing_from_sop_instance_uid_is_422(name, mutate,
                                                                               validate):
    def edit(ds):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".1"

    result = validate(mutate(name, edit))
    assert result.status == 422
    mismatch = findings_of(result, "meta.sop-instance-mismatch")
    assert [f.keyword for f in mismatch] == ["SOPInstanceUID"]


def test_media_storage_sop_class_uid_differing_from_sop_class_uid_is_422(mutate, validate):
    def edit(ds):
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT, file is MR

    result = validate(mutate("MR_small.dcm", edit))
    assert result.status == 422
    assert findings_of(result, "meta.sop-class-mismatch")


def test_real_rtplan_whose_meta_names_another_instance_is_422(corpus, validate):
    dataset = corpus.read(corpus.path("rtplan.dcm"))
    assert dataset.file_meta.MediaStorageSOPInstanceUID != dataset.SOPInstanceUID
    result = validate(corpus.path("rtplan.dcm"))
    assert result.status == 422
    assert error_rules(result) == {"meta.sop-instance-mismatch"}
