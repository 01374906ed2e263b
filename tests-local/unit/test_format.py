"""Part 10 structure: real files of many modalities and transfer syntaxes are valid (200);
files that are not readable DICOM Part 10 are rejected with 400 and the right format rule."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import pytest

PREAMBLE_AND_PREFIX = 132

VALID_FILES = [
    "CT_small.dcm",  # CT, explicit VR little endian
    "MR_small.dcm",  # MR, explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR little endian
    "MR_small_bigendian.dcm",  # explicit VR big endian (retired, still readable)
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",  # RLE lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEG2000.dcm",  # JPEG 2000
    "JPGExtended.dcm",  # JPEG extended (process 2 & 4)
    "JPEG-lossy.dcm",  # JPEG baseline
    "SC_rgb_rle_2frame.dcm",  # two-frame RLE, RGB
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "SC_rgb_small_odd.dcm",  # odd Rows x Columns, native RGB
    "SC_rgb_small_odd_jpeg.dcm",
    "SC_ybr_full_422_uncompressed.dcm",  # YBR_FULL_422 native (2/3 of the RGB length)
    "SC_rgb_jpeg_gdcm.dcm",
    "examples_palette.dcm",  # ultrasound, PALETTE COLOR
    "examples_ybr_color.dcm",
    "examples_jpeg2k.dcm",
    "waveform_ecg.dcm",  # 12-lead ECG: no pixel data at all
]


def rules(result) -> set[str]:
    return {f.rule for f in result.findings}


def error_rules(result) -> set[str]:
    return {f.rule for f in result.findings if f.severity.value == "error"}


def meta_end(data: bytes) -> int:
    """Where the file meta ends: after (0002,0000), whose UL value is the group's length."""
    assert data[PREAMBLE_AND_PREFIX:PREAMBLE_AND_PREFIX + 4] == b"\x02\x00\x00\x00"
    (group_length,) = struct.unpack("<I", data[PREAMBLE_AND_PREFIX + 8:PREAMBLE_AND_PREFIX + 12])
    return PREAMBLE_AND_PREFIX + 12 + group_length


# --- valid real files ---------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID_FILES)
def test_real_file_of_each_modality_and_transfer_syntax_is_valid(name, corpus, validate):
    path = corpus.path(name)
    result = validate(path)
    assert result.status == 200, [f.to_dict() for f in result.findings]
    assert result.valid
    assert not error_rules(result)
    data = path.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", VALID_FILES)
def test_summary_uids_are_the_ones_pydicom_reads(name, corpus, validate):
    path = corpus.path(name)
    dataset = corpus.read(path, pixels=False)
    summary = validate(path).summary
    assert summary.sop_instance_uid == dataset.SOPInstanceUID
    assert summary.study_instance_uid == dataset.StudyInstanceUID
    assert summary.series_instance_uid == dataset.SeriesInstanceUID
    assert summary.modality == dataset.Modality
    assert summary.transfer_syntax == dataset.file_meta.TransferSyntaxUID


def test_every_instance_of_the_real_dicomdir_studies_is_valid(corpus, validate):
    files = [p for group in corpus.studies().values() for p in group]
    assert len(files) == 31
    for path in files:
        result = validate(path)
        assert result.status == 200, (path, [f.to_dict() for f in result.findings])


@pytest.mark.parametrize("name", ["MR_small.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm",
                                  "MR_small_bigendian.dcm", "waveform_ecg.dcm"])
def test_valid_file_read_from_non_seekable_stream_is_valid(name, corpus, validate):
    data = corpus.path(name).read_bytes()
    stream = corpus.nonseekable(data)
    with pytest.raises(OSError):
        stream.seek(0)  # the stream really cannot seek
    result = validate(stream, name=name)
    assert result.status == 200
    assert result.name == name
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "JPGExtended.dcm"])
def test_valid_file_read_from_bytesio_is_valid(name, corpus, validate):
    data = corpus.path(name).read_bytes()
    result = validate(io.BytesIO(data))
    assert result.status == 200
    assert result.sha256 == hashlib.sha256(data).hexdigest()


def test_truncated_file_read_from_non_seekable_stream_is_rejected(corpus, validate):
    data = corpus.path("MR_truncated.dcm").read_bytes()
    result = validate(corpus.nonseekable(data))
    assert result.status == 400
    assert "format.truncated" in rules(result)


def test_deflated_file_with_required_attributes_is_valid(mutate, corpus, validate):
    """Deflated explicit VR little endian: the data set is inflated before it is scanned."""

    def complete(ds):
        ds.PatientID = "DFL1"
        ds.StudyDate = "20000101"

    path = mutate("image_dfl.dcm", complete)
    assert corpus.read(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    assert validate(path).status == 200


def test_real_deflated_file_is_read_and_judged_on_its_content(corpus, validate):
    dataset = corpus.read(corpus.path("image_dfl.dcm"), pixels=False)
    assert not dataset.get("PatientID") and not dataset.get("StudyDate")  # absent or empty
    result = validate(corpus.path("image_dfl.dcm"))
    assert result.status == 422
    assert {(f.rule, f.keyword) for f in result.findings} == {
        ("attribute.required", "PatientID"), ("attribute.required", "StudyDate")}


def test_deflated_file_cut_short_is_rejected_never_crashes(mutate, write_bytes, validate):
    def complete(ds):
        ds.PatientID = "DFL1"
        ds.StudyDate = "20000101"

    data = mutate("image_dfl.dcm", complete).read_bytes()
    assert len(data) % 2 == 0 and data[-1] == 0  # the last byte is the even-length pad
    for cut in [*range(2, 40), len(data) // 2, len(data) - 400]:
        result = validate(write_bytes(data[:-cut], "dfl-cut.dcm"))
        assert result.status == 400, cut
        assert "format.truncated" in rules(result) or "format.structure" in rules(result), cut


# --- pydicom's broken files ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["no_meta.dcm", "ExplVR_LitEndNoMeta.dcm",
                                  "ExplVR_BigEndNoMeta.dcm", "rtstruct.dcm"])
def test_file_without_preamble_and_dicm_prefix_is_rejected(name, corpus, validate):
    data = corpus.path(name).read_bytes()
    assert data[128:132] != b"DICM"  # what makes these files not Part 10
    result = validate(corpus.path(name))
    assert result.status == 400
    assert error_rules(result) == {"format.preamble"}


def test_file_meta_without_transfer_syntax_is_rejected(corpus, validate):
    dataset = corpus.read(corpus.path("meta_missing_tsyntax.dcm"))
    assert "TransferSyntaxUID" not in dataset.file_meta
    result = validate(corpus.path("meta_missing_tsyntax.dcm"))
    assert result.status == 400
    assert "format.transfer-syntax" in rules(result)
    ts = [f for f in result.findings if f.rule == "format.transfer-syntax"]
    assert ts[0].tag == "(0002,0010)"


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_truncated_real_file_is_rejected(name, corpus, validate):
    result = validate(corpus.path(name))
    assert result.status == 400
    assert "format.truncated" in rules(result)
    assert result.summary.sop_instance_uid is None  # nothing of an unreadable file is trusted


def test_text_file_is_rejected(corpus, validate):
    result = validate(corpus.test_files / "README.txt")
    assert result.status == 400
    assert rules(result) == {"format.preamble"}


def test_empty_file_is_rejected(write_bytes, validate):
    result = validate(write_bytes(b"", "empty.dcm"))
    assert result.status == 400
    assert rules(result) == {"format.preamble"}


def test_preamble_and_prefix_with_nothing_after_are_rejected(write_bytes, validate):
    result = validate(write_bytes(b"\x00" * 128 + b"DICM", "prefix-only.dcm"))
    assert result.status == 400
    assert error_rules(result)


def test_preamble_and_file_meta_without_data_set_are_rejected(corpus, write_bytes, validate):
    data = corpus.path("MR_small.dcm").read_bytes()
    result = validate(write_bytes(data[: meta_end(data)], "meta-only.dcm"))
    assert result.status == 400
    assert "format.empty-dataset" in rules(result)


# --- byte-level mutations ------------------------------------------------------------------


def _truncation_points(data: bytes, value: bytes) -> dict[str, int]:
    """Cut points that all fall strictly inside an element, item or header."""
    value_at = data.index(value)
    return {
        "inside the file meta": PREAMBLE_AND_PREFIX + 20,
        "inside an element header": value_at - 3,
        "inside an element value": value_at + len(value) // 2,
        "inside the pixel data / last element": len(data) - len(data) // 8,
        "one byte short": len(data) - 1,
    }


TRUNCATION_CASES = [
    ("MR_small.dcm", b"CompressedSamples^MR1"),
    ("MR_small_implicit.dcm", b"CompressedSamples^MR1"),
    ("MR_small_bigendian.dcm", b"CompressedSamples^MR1"),
    ("CT_small.dcm", b"CompressedSamples^CT1"),
    ("SC_rgb_rle_2frame.dcm", b"Lestrade^G"),
    ("JPEG2000.dcm", b"CompressedSamples^NM1"),
    ("rtplan.dcm", b"Last^First^mid^pre"),
]


@pytest.mark.parametrize(("name", "value"), TRUNCATION_CASES)
def test_valid_file_truncated_anywhere_inside_is_rejected(name, value, corpus, write_bytes,
                                                          validate):
    data = corpus.path(name).read_bytes()
    assert validate(corpus.path(name)).status != 400
    for where, offset in _truncation_points(data, value).items():
        result = validate(write_bytes(data[:offset], f"cut-{offset}.dcm"))
        assert result.status == 400, (where, offset, [f.to_dict() for f in result.findings])
        assert error_rules(result) & {"format.truncated", "format.file-meta"}, where


def test_rtplan_truncated_inside_a_sequence_item_is_rejected(corpus, write_bytes, validate):
    data = corpus.path("rtplan.dcm").read_bytes()
    beam = corpus.read(data).BeamSequence[0]
    inside = data.index(str(beam.TreatmentMachineName).encode()) + 2
    result = validate(write_bytes(data[:inside], "rtplan-cut.dcm"))
    assert result.status == 400
    assert "format.truncated" in rules(result)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm",
                                  "SC_rgb_rle_2frame.dcm"])
@pytest.mark.parametrize("garbage", [b"TRAILING GARBAGE", b"\xde\xad\xbe\xef" * 8, b"\x01\x02"])
def test_garbage_appended_to_valid_file_is_rejected(name, garbage, corpus, write_bytes,
                                                    validate):
    data = corpus.path(name).read_bytes() + garbage
    result = validate(write_bytes(data, "garbage.dcm"))
    assert result.status == 400, [f.to_dict() for f in result.findings]
    assert error_rules(result) & {"format.truncated", "format.structure"}


def test_zero_bytes_appended_to_implicit_vr_file_are_only_a_warning(corpus, write_bytes, validate):
    """Common readers ignore trailing zeros (issue 8); other trailing bytes stay a 400."""
    data = corpus.path("MR_small_implicit.dcm").read_bytes() + b"\x00" * 16
    result = validate(write_bytes(data, "zero-padded.dcm"))
    assert result.status == 200
    assert rules(result) == {"format.trailing-padding"}


def test_data_set_trailing_padding_element_is_accepted(corpus, write_bytes, validate):
    """(FFFC,FFFC) Data Set Trailing Padding is the one legal thing after PixelData."""
    padding = b"\xfc\xff\xfc\xff" + struct.pack("<I", 8) + b"\x00" * 8
    data = corpus.path("MR_small_implicit.dcm").read_bytes() + padding
    assert validate(write_bytes(data, "padded.dcm")).status == 200


def test_dicm_prefix_overwritten_is_rejected(corpus, write_bytes, validate):
    data = bytearray(corpus.path("MR_small.dcm").read_bytes())
    data[128:132] = b"XXXX"
    result = validate(write_bytes(bytes(data), "no-dicm.dcm"))
    assert result.status == 400
    assert rules(result) == {"format.preamble"}


@pytest.mark.parametrize("header", [b"\xff" * 8, b"\x10\x00\x10\x00\x00\x00\x00\x00"])
def test_element_header_overwritten_with_garbage_is_rejected(header, corpus, write_bytes,
                                                             validate):
    data = bytearray(corpus.path("MR_small.dcm").read_bytes())
    at = data.index(b"\x10\x00\x10\x00PN")  # (0010,0010) PatientName, explicit VR header
    data[at:at + 8] = header
    result = validate(write_bytes(bytes(data), "bad-header.dcm"))
    assert result.status == 400
    assert error_rules(result) & {"format.structure", "format.truncated"}


def test_file_meta_element_header_overwritten_is_rejected(corpus, write_bytes, validate):
    data = bytearray(corpus.path("MR_small.dcm").read_bytes())
    at = data.index(b"\x02\x00\x10\x00UI")  # (0002,0010) TransferSyntaxUID
    data[at + 4:at + 6] = b"\x00\x00"  # no valid VR
    result = validate(write_bytes(bytes(data), "bad-meta.dcm"))
    assert result.status == 400
    assert error_rules(result) & {"format.file-meta", "format.transfer-syntax"}


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm"])
def test_unknown_transfer_syntax_uid_in_file_meta_is_rejected(name, corpus, write_bytes,
                                                              validate):
    data = corpus.path(name).read_bytes()
    syntax = str(corpus.read(data).file_meta.TransferSyntaxUID).encode()
    at = data.index(syntax, 0, meta_end(data))
    unknown = (b"1.2.3.999" + b"9" * 64)[: len(syntax)]  # same length, well-formed, unknown
    mutated = data[:at] + unknown + data[at + len(syntax):]
    result = validate(write_bytes(mutated, "unknown-ts.dcm"))
    assert result.status == 400
    assert "format.transfer-syntax" in rules(result)


def test_oversized_file_is_413_before_anything_else(corpus, validate):
    from pacs_validator.dicom.config import build_config

    path = corpus.path("MR_truncated.dcm")  # unreadable too: the size cap wins
    small_cap = build_config({"max_bytes": path.stat().st_size - 1})
    result = validate(path, small_cap)
    assert result.status == 413
    assert rules(result) == {"size.max-bytes"}
    exact_cap = build_config({"max_bytes": corpus.path("MR_small.dcm").stat().st_size})
    assert validate(corpus.path("MR_small.dcm"), exact_cap).status == 200


def test_missing_file_raises_rather_than_returning_a_verdict(tmp_path: Path, validate):
    with pytest.raises(FileNotFoundError):
        validate(tmp_path / "nope.dcm")
