"""Tests for pacs_validator.dicom.iod and its generated data file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.datadict import keyword_for_tag

try:
    from pacs_validator.dicom.iod import IodAttribute, iod_name, mandatory_attributes
except ImportError:  # pragma: no cover - only when pythonpath is not configured
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "layers" / "core"))
    from pacs_validator.dicom.iod import IodAttribute, iod_name, mandatory_attributes

REPO_ROOT = Path(__file__).resolve().parents[2]
CORE = REPO_ROOT / "layers" / "core"
BUILDER = REPO_ROOT / "layers" / "tools" / "build_iod_table.py"
TABLE = CORE / "pacs_validator" / "data" / "iod_table.json"

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _by_keyword(uid: str) -> dict[str, IodAttribute]:
    return {a.keyword: a for a in mandatory_attributes(uid)}


def test_ct_image_known_requirements() -> None:
    assert iod_name(CT_IMAGE) == "ct-image"
    attrs = _by_keyword(CT_IMAGE)
    expected = {
        "PatientName": ("2", "patient"),
        "PatientID": ("2", "patient"),
        "StudyInstanceUID": ("1", "general-study"),
        "StudyDate": ("2", "general-study"),
        "Modality": ("1", "general-series"),
        "SeriesInstanceUID": ("1", "general-series"),
        "ImageType": ("1", "ct-image"),
        "KVP": ("2", "ct-image"),
        "SOPClassUID": ("1", "sop-common"),
        "SOPInstanceUID": ("1", "sop-common"),
    }
    for keyword, (type_, module) in expected.items():
        assert (attrs[keyword].type, attrs[keyword].module) == (type_, module), keyword
    assert attrs["PatientID"].tag == 0x00100020


def test_ct_image_excludes_conditional_and_optional() -> None:
    attrs = _by_keyword(CT_IMAGE)
    # PixelData is 1C in Image Pixel; Laterality is 2C; SliceLocation is 3;
    # file meta (group 0002) never belongs to an IOD.
    for keyword in ("PixelData", "Laterality", "SliceLocation"):
        assert keyword not in attrs
    assert all(a.tag >> 16 != 0x0002 for a in attrs.values())


def test_attributes_sorted_by_tag_and_unique() -> None:
    tags = [a.tag for a in mandatory_attributes(CT_IMAGE)]
    assert tags == sorted(set(tags))


def test_mr_image_exists() -> None:
    assert iod_name(MR_IMAGE) == "mr-image"
    attrs = _by_keyword(MR_IMAGE)
    assert attrs["ScanningSequence"].type == "1"
    assert attrs["StudyInstanceUID"].type == "1"


def test_sr_root_context_only_attributes_dropped() -> None:
    attrs = _by_keyword(COMPREHENSIVE_SR)
    assert attrs["ValueType"].type == "1"
    for keyword in ("GraphicData", "TemporalRangeType", "ConceptCodeSequence"):
        assert keyword not in attrs


def test_unknown_sop_class() -> None:
    assert mandatory_attributes("1.2.3.4.5") == ()
    assert iod_name("1.2.3.4.5") is None
    assert mandatory_attributes("") == ()


def test_table_entries_valid() -> None:
    raw = json.loads(TABLE.read_text(encoding="utf-8"))
    assert set(raw) == {"generated_from", "iods", "sop_classes"}
    assert set(raw["sop_classes"].values()) <= set(raw["iods"])
    hex8 = re.compile(r"[0-9A-F]{8}")
    for iod_key, rows in raw["iods"].items():
        assert rows, iod_key
        for tag, keyword, type_, module in rows:
            assert hex8.fullmatch(tag), (iod_key, tag)
            assert keyword_for_tag(int(tag, 16)) == keyword, (iod_key, tag, keyword)
            assert type_ in ("1", "2"), (iod_key, keyword)
            assert module, (iod_key, keyword)


def test_table_matches_builder(tmp_path: Path) -> None:
    pytest.importorskip("highdicom")
    out = tmp_path / "iod_table.json"
    subprocess.run(
        [sys.executable, str(BUILDER), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == TABLE.read_bytes(), (
        "iod_table.json is stale: run layers/tools/build_iod_table.py"
    )
