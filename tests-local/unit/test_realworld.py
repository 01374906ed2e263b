"""Real-world shapes of sound files are not rejected; garbage in the same places still is.

Every file is a real corpus file (pydicom's bundled test files) reshaped by
``realworld.py`` into what scanners and toolkits write in the wild.
"""

from __future__ import annotations

import pytest
import realworld
from pydicom.uid import DeflatedExplicitVRLittleEndian

TEST_FILES = realworld.TEST_FILES
ENCAPSULATED = ["MR_small_RLE.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm", "SC_rgb_rle_2frame.dcm",
                "MR_small_jpeg_ls_lossless.dcm"]
NATIVE = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"]


def rules(result) -> set[str]:
    return {f.rule for f in result.findings}


def errors(result) -> set[str]:
    return {f.rule for f in result.findings if f.severity.value == "error"}


# --- 1. encapsulated pixel data inside a sequence item ----------------------------------


@pytest.mark.parametrize("name", ENCAPSULATED + NATIVE)
def test_icon_image_sequence_with_the_files_own_encoding_is_valid(name, tmp_path, validate):
    path = realworld.with_icon(TEST_FILES / name, tmp_path / name)
    result = validate(path)
    assert result.status == 200, [f.to_dict() for f in result.findings]
    icon = realworld.read(path).IconImageSequence[0]
    assert icon["PixelData"].is_undefined_length == (name in ENCAPSULATED)


def test_encapsulated_icon_does_not_count_as_frames_of_the_image(tmp_path, validate):
    """The top-level frame rules judge the image only: a 2-frame RLE file with a 1-frame
    encapsulated icon before its pixel data still has 2 frames."""
    path = realworld.with_icon(TEST_FILES / "SC_rgb_rle_2frame.dcm", tmp_path / "icon.dcm")
    assert "pixel.frame-count" not in rules(validate(path))


def test_encapsulated_icon_that_is_not_items_is_garbled(tmp_path, validate):
    icon = realworld.with_icon(TEST_FILES / "MR_small_RLE.dcm", tmp_path / "icon.dcm")
    blob = icon.read_bytes()
    header = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"  # the first one is the icon's
    first_item = blob.index(header) + len(header)
    assert blob[first_item:first_item + 4] == b"\xfe\xff\x00\xe0"
    path = tmp_path / "garbled.dcm"
    path.write_bytes(blob[:first_item] + b"\x01\x02\x03\x04" + blob[first_item + 4:])
    result = validate(path)
    assert result.status == 400
    assert errors(result) == {"format.structure"}


def test_encapsulated_icon_cut_short_is_truncated(tmp_path, validate):
    icon = realworld.with_icon(TEST_FILES / "JPEG2000.dcm", tmp_path / "icon.dcm")
    blob = icon.read_bytes()
    dataset = realworld.read(icon)
    icon_end = blob.index(bytes(dataset.PixelData[:16]))  # the image's own pixel data
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(blob[:icon_end - 200])
    result = validate(cut)
    assert result.status == 400
    assert errors(result) == {"format.truncated"}


# --- 2. trailing zero padding -------------------------------------------------------------


@pytest.mark.parametrize("name", NATIVE + ENCAPSULATED + ["rtplan.dcm", "test-SR.dcm"])
@pytest.mark.parametrize("size", [1, 3, 4, 1024])
def test_trailing_zero_padding_is_a_warning_not_a_rejection(name, size, tmp_path, validate):
    source = TEST_FILES / name
    plain = validate(source)
    path = realworld.with_zero_padding(source, tmp_path / name, size)
    padded = validate(path)
    assert padded.status == plain.status
    assert rules(padded) == rules(plain) | {"format.trailing-padding"}
    finding = next(f for f in padded.findings if f.rule == "format.trailing-padding")
    assert finding.severity.value == "warning"
    assert str(size) in finding.message


def test_megabytes_of_zero_padding_are_read_in_bounded_chunks(tmp_path, validate):
    size = 5 * 1024 * 1024 + 3
    path = realworld.with_zero_padding(TEST_FILES / "CT_small.dcm", tmp_path / "ct.dcm", size)
    result = validate(path)
    assert result.status == 200
    assert rules(result) == {"format.trailing-padding"}


def test_padding_never_becomes_elements_of_the_data_set(tmp_path, config):
    from pacs_validator.dicom.validation import validate_instance

    source = TEST_FILES / "test-SR.dcm"  # no pixel data: pydicom would read to the end
    path = realworld.with_zero_padding(source, tmp_path / "sr.dcm", 64)
    _, parsed = validate_instance(path, config)
    assert parsed.dataset is not None
    assert all(element.tag.group for element in parsed.dataset)
    assert len(parsed.dataset) == len(realworld.read(source))


def test_padding_can_be_made_an_error_by_config(tmp_path, validate):
    from pacs_validator.dicom.config import build_config

    strict = build_config({"rules": {"format.trailing-padding": {"severity": "error"}}})
    path = realworld.with_zero_padding(TEST_FILES / "CT_small.dcm", tmp_path / "ct.dcm", 10)
    assert validate(path, strict).status == 422


@pytest.mark.parametrize("tail", [b"\x00" * 100 + b"\x01", b"\x01" + b"\x00" * 100,
                                  b"\xff" * 16, b"\x00\x00\x00\x00\x10\x00"])
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm"])
def test_garbage_after_the_last_element_stays_a_rejection(name, tail, tmp_path, validate):
    path = realworld.with_trailing_bytes(TEST_FILES / name, tmp_path / name, tail)
    result = validate(path)
    assert result.status == 400
    assert errors(result) & {"format.structure", "format.tag-order", "format.truncated"}


def test_zero_padding_after_the_file_meta_is_an_empty_data_set(tmp_path, validate):
    blob = (TEST_FILES / "CT_small.dcm").read_bytes()
    meta_end = 132 + 12 + int.from_bytes(blob[140:144], "little")
    path = tmp_path / "meta-only.dcm"
    path.write_bytes(blob[:meta_end] + bytes(512))
    result = validate(path)
    assert result.status == 400
    assert "format.empty-dataset" in errors(result)


def test_padding_of_a_deflated_file_after_its_deflate_stream(tmp_path, validate):
    deflated = realworld.deflated(TEST_FILES / "CT_small.dcm", tmp_path / "deflated.dcm")
    assert realworld.read(deflated).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert validate(deflated).status == 200
    padded = realworld.with_zero_padding(deflated, tmp_path / "padded.dcm", 256)
    assert validate(padded).status == 200
