"""The regression corpus of real-world shapes: every case is validated with the status the
rules give it. New object types are built with highdicom from a real CT (pydicom's
CT_small); variants are reshaped real files (``realworld.py``). Nothing is vendored."""

from __future__ import annotations

import pytest
import realworld
from pydicom.uid import ExplicitVRBigEndian

TEST_FILES = realworld.TEST_FILES


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Every highdicom-built object, made once per session."""
    folder = tmp_path_factory.mktemp("realworld")
    sources = realworld.ct_series(folder)
    return {
        "segmentation-binary": realworld.segmentation(sources, folder / "seg-b.dcm", False),
        "segmentation-fractional": realworld.segmentation(sources, folder / "seg-f.dcm", True),
        "comprehensive-sr": realworld.structured_report(sources, folder / "sr.dcm", False),
        "comprehensive-3d-sr": realworld.structured_report(sources, folder / "sr3d.dcm", True),
        "parametric-map": realworld.parametric_map(sources, folder / "pm.dcm"),
        "key-object-selection": realworld.key_object_selection(sources, folder / "kos.dcm"),
        "presentation-state": realworld.presentation_state(sources, folder / "gsps.dcm"),
        "ct-slice": folder / "ct0.dcm",
    }


@pytest.mark.parametrize("kind", ["segmentation-binary", "segmentation-fractional",
                                  "comprehensive-sr", "comprehensive-3d-sr", "parametric-map",
                                  "key-object-selection", "presentation-state", "ct-slice"])
def test_highdicom_objects_are_valid(kind, built, validate):
    result = validate(built[kind])
    assert result.status == 200, [f.to_dict() for f in result.findings]


def test_segmentations_have_one_frame_per_slice_and_segment(built):
    for kind in ("segmentation-binary", "segmentation-fractional"):
        assert int(realworld.read(built[kind]).NumberOfFrames) == 8


def test_segmentation_with_an_encapsulated_icon_is_valid(built, tmp_path, validate):
    """Real segmentation objects carry icons; this one holds the fractional frame natively
    and an RLE-compressed one would be read the same way (see test_realworld)."""
    path = realworld.with_icon(built["segmentation-fractional"], tmp_path / "seg-icon.dcm")
    assert validate(path).status == 200


@pytest.mark.parametrize("tiles", [4, 64])
def test_whole_slide_tiled_full_is_valid_with_iod_warnings_only(tiles, tmp_path, validate):
    result = validate(realworld.whole_slide_tiles(tmp_path / "wsi.dcm", tiles))
    assert result.status == 200
    assert {f.rule for f in result.findings} <= {"iod.type1", "iod.type2"}


def test_whole_slide_with_a_tile_missing_is_a_frame_count_error(tmp_path, validate):
    path = realworld.whole_slide_tiles(tmp_path / "wsi.dcm", 4)
    short = realworld.edited(path, tmp_path / "short.dcm",
                             lambda ds: setattr(ds, "NumberOfFrames", 5))
    result = validate(short)
    assert result.status == 422
    assert "pixel.frame-count" in {f.rule for f in result.findings}


# --- pydicom variants of real files --------------------------------------------------------


@pytest.mark.parametrize("offset_table", ["empty", "basic", "extended"])
@pytest.mark.parametrize("name", ["SC_rgb_rle_2frame.dcm", "SC_rgb_rle_16bit_2frame.dcm"])
def test_multi_frame_with_and_without_offset_tables_is_valid(name, offset_table, tmp_path,
                                                             validate):
    path = realworld.reencapsulated(TEST_FILES / name, tmp_path / name, offset_table)
    assert validate(path).status == 200


def test_extended_offset_table_with_a_wrong_entry_count_is_422(tmp_path, validate):
    path = realworld.reencapsulated(TEST_FILES / "SC_rgb_rle_2frame.dcm", tmp_path / "e.dcm",
                                    "extended")

    def drop_entry(dataset):
        dataset.ExtendedOffsetTable = dataset.ExtendedOffsetTable[:8]
        dataset.ExtendedOffsetTableLengths = dataset.ExtendedOffsetTableLengths[:8]

    result = validate(realworld.edited(path, tmp_path / "bad.dcm", drop_entry))
    assert result.status == 422
    assert "pixel.frame-count" in {f.rule for f in result.findings}


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"])
def test_deflated_variant_has_the_verdict_of_the_original(name, tmp_path, validate):
    path = realworld.deflated(TEST_FILES / name, tmp_path / name)
    assert validate(path).status == validate(TEST_FILES / name).status


def test_big_endian_files_are_read(validate):
    for name in ("MR_small_bigendian.dcm", "MR_small_expb.dcm"):
        path = TEST_FILES / name
        assert realworld.read(path).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
        assert validate(path).status == 200


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.53",
                                    "1.2.840.10008.1.2.4.55"])
def test_jpeg_under_a_retired_jpeg_transfer_syntax_is_read(syntax, tmp_path, validate):
    path = realworld.relabelled(TEST_FILES / "JPEG-lossy.dcm", tmp_path / "jpeg.dcm", syntax)
    assert validate(path).status == 200


def test_file_without_preamble_is_rejected_on_purpose(tmp_path, validate):
    """The gate takes Part 10 files only (dciodvfy reads such files; we answer 400)."""
    result = validate(realworld.without_preamble(TEST_FILES / "CT_small.dcm", tmp_path / "n"))
    assert result.status == 400
    assert {f.rule for f in result.findings} == {"format.preamble"}


@pytest.mark.parametrize("name", ["DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-implicit"])
def test_dicomdir_is_readable_but_has_no_patient_or_study(name, validate):
    result = validate(TEST_FILES / "dicomdirtests" / name)
    assert result.status == 422
    errors = {f.rule for f in result.findings if f.severity.value == "error"}
    assert errors == {"attribute.required"}


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"])
def test_private_sequence_in_implicit_vr_inside_explicit_file_is_valid(name, tmp_path,
                                                                       validate):
    path = realworld.with_implicit_private_sequence(TEST_FILES / name, tmp_path / name)
    assert validate(path).status == 200


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"])
def test_odd_length_private_element_is_only_a_warning(name, tmp_path, validate):
    path = realworld.with_odd_length_private(TEST_FILES / name, tmp_path / name)
    result = validate(path)
    assert result.status == 200
    assert [f.rule for f in result.findings] == ["format.odd-length"]


def test_pydicom_data_real_scanner_files_are_valid(validate):
    data_store = pytest.importorskip("data_store")
    from pathlib import Path

    folder = Path(data_store.__file__).parent / "data"
    for name in ("MR-SIEMENS-DICOM-WithOverlays.dcm", "eCT_Supplemental.dcm", "US1_J2KR.dcm",
                 "OBXXXX1A_rle_2frame.dcm", "RG1_J2KR.dcm"):
        assert validate(folder / name).status == 200, name
