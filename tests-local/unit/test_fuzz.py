"""Property: no byte-level damage to a real file makes the validator crash or answer vaguely.

Whatever the bytes, ``validate_instance`` returns a verdict with a contract status, and any
verdict other than 200 is explained by at least one error finding of a catalogued rule.
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacs_validator.dicom.config import build_config
from pacs_validator.dicom.rules import rule_ids
from pacs_validator.dicom.validation import validate_instance

SEEDS = ("MR_small.dcm", "rtplan.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm")
PYDICOM_DATA = Path(pydicom.__file__).parent / "data"
TEST_FILES = PYDICOM_DATA / "test_files"
SEED_BYTES = {name: (TEST_FILES / name).read_bytes() for name in SEEDS}
CONFIG = build_config()
RULES = frozenset(rule_ids())
HEADER_REGION = 1500
"""Most of the structure (meta, attributes, sequences) lives in the first bytes; pixel data
after it. Offsets are drawn from this region half of the time so that mutations hit it."""


def _offset(data: st.DataObject, size: int) -> int:
    limit = max(size - 1, 0)
    return data.draw(st.one_of(st.integers(0, min(HEADER_REGION, limit)), st.integers(0, limit)))


def _mutate(data: st.DataObject, blob: bytes) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]))
    at = _offset(data, len(blob))
    if kind == "flip":
        mask = data.draw(st.integers(1, 255))
        return blob[:at] + bytes([blob[at] ^ mask]) + blob[at + 1:] if blob else blob
    if kind == "insert":
        return blob[:at] + data.draw(st.binary(min_size=1, max_size=8)) + blob[at:]
    if kind == "delete":
        return blob[:at] + blob[at + data.draw(st.integers(1, 16)):]
    if kind == "overwrite":
        chunk = data.draw(st.binary(min_size=1, max_size=8))
        return blob[:at] + chunk + blob[at + len(chunk):]
    return blob[:at]


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_byte_damage_never_crashes_and_always_explains_itself(data):
    name = data.draw(st.sampled_from(SEEDS))
    blob = SEED_BYTES[name]
    for _ in range(data.draw(st.integers(1, 3))):
        blob = _mutate(data, blob)
    result, _ = validate_instance(io.BytesIO(blob), CONFIG, name=name)
    assert result.status in {200, 400, 413, 422}
    assert all(f.rule in RULES for f in result.findings)
    errors = [f for f in result.findings if f.severity.value == "error"]
    if result.status == 200:
        assert not errors
    else:
        assert errors
        assert result.status in {f.status for f in errors}
    assert result.size == len(blob)


# --- shapes the fuzz benchmark (benchmarks/bench_fuzz.py) exercises -------------------------

VR_HEADER = re.compile(rb"[\x00-\xff]{4}(?:AE|AS|AT|CS|DA|DS|DT|FD|FL|IS|LO|LT|OB|OW|PN|SH|SL|"
                       rb"SQ|SS|ST|TM|UI|UL|UN|US|UT)", re.DOTALL)
SHORT_VRS = [b"SL", b"FL", b"FD", b"US", b"UL", b"SS", b"AT", b"CS", b"DA", b"UI", b"LO"]
SHAPE_SEEDS = ("CT_small.dcm", "SC_ybr_full_422_uncompressed.dcm", "JPEG2000.dcm", "rtplan.dcm",
               "MR_small_bigendian.dcm")
SHAPE_BYTES = {name: (TEST_FILES / name).read_bytes() for name in SHAPE_SEEDS}


def _short_vr_offsets(blob: bytes) -> list[int]:
    """Offsets of the VRs of short-length explicit VR headers, file meta included."""
    return [m.start() + 4 for m in VR_HEADER.finditer(blob, 132, 4096)
            if blob[m.start() + 4:m.start() + 6] not in (b"OB", b"OW", b"SQ", b"UN", b"UT")]


def assert_explained(result) -> None:
    assert result.status in {200, 400, 413, 422}
    assert all(f.rule in RULES for f in result.findings)
    errors = {f.status for f in result.findings if f.severity.value == "error"}
    assert (result.status == 200) == (not errors)
    assert result.status == 200 or result.status in errors


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_swapped_vrs_corrupted_lengths_and_duplicated_chunks_never_crash(data):
    name = data.draw(st.sampled_from(SHAPE_SEEDS))
    blob = bytearray(SHAPE_BYTES[name])
    offsets = _short_vr_offsets(bytes(blob))
    at = data.draw(st.sampled_from(offsets))
    shape = data.draw(st.sampled_from(["swap-vr", "length", "duplicate"]))
    if shape == "swap-vr":  # in the file meta (offsets before ~300) and in the data set
        blob[at:at + 2] = data.draw(st.sampled_from(SHORT_VRS))
    elif shape == "length":
        blob[at + 2:at + 4] = struct.pack("<H", data.draw(st.sampled_from(
            [0, 1, 3, 0xFFFF, data.draw(st.integers(0, 0xFFFF))])))
    else:
        size = data.draw(st.integers(1, 64))
        blob[at:at] = blob[at:at + size]
    result, _ = validate_instance(io.BytesIO(bytes(blob)), CONFIG, name=name)
    assert_explained(result)


@pytest.mark.parametrize(("name", "vr"), [("charset_files/chrHbrw.dcm", b"US"),
                                          ("test_files/SC_ybr_full_422_uncompressed.dcm", b"SL"),
                                          ("test_files/CT_small.dcm", b"FD")])
def test_specific_character_set_swapped_to_a_binary_vr_is_unreadable_not_a_crash(name, vr):
    """Mutations that crashed pydicom inside the validator (BytesLengthException, and
    TypeError from charset lookup on an int): now a 400 with a rule."""
    blob = (PYDICOM_DATA / name).read_bytes()
    header = b"\x08\x00\x05\x00CS"  # SpecificCharacterSet, explicit VR little endian
    at = blob.index(header) + 4
    result, _ = validate_instance(io.BytesIO(blob[:at] + vr + blob[at + 2:]), CONFIG, name=name)
    assert result.status == 400
    assert {f.rule for f in result.findings if f.severity.value == "error"} == {"format.dataset"}


@pytest.mark.parametrize("vr", [b"SL", b"FL", b"FD", b"US"])
def test_transfer_syntax_uid_swapped_to_a_binary_vr_in_the_file_meta_is_explained(vr):
    blob = SHAPE_BYTES["CT_small.dcm"]
    at = blob.index(b"\x02\x00\x10\x00UI") + 4
    result, _ = validate_instance(io.BytesIO(blob[:at] + vr + blob[at + 2:]), CONFIG)
    assert_explained(result)


@pytest.mark.parametrize("vr", [b"UL", b"SL", b"FL", b"FD"])
@pytest.mark.parametrize(("header", "tag"), [(b"\x02\x00\x02\x00UI", "(0002,0002)"),
                                             (b"\x02\x00\x12\x00UI", "(0002,0012)")])
def test_file_meta_uid_swapped_to_a_binary_vr_of_another_width_is_a_warning_not_a_500(
        header, tag, vr, tmp_path):
    """bench_fuzz's swapped VR in the file meta, read from disk as the validator reads an
    upload, so that dciodvfy runs: pydicom leaves the file meta's values undecoded, and the
    conformance locator, walking them to place the engine's findings, raised pydicom's
    BytesLengthException (a 500; 46 of 10,000 inputs of seed 8 read from disk). The value,
    26 and 18 bytes of CT_small's UIDs, is no whole number of 4- or 8-byte values."""
    blob = SHAPE_BYTES["CT_small.dcm"]
    at = blob.index(header) + 4
    path = tmp_path / "meta.dcm"
    path.write_bytes(blob[:at] + vr + blob[at + 2:])
    result, _ = validate_instance(path, CONFIG)
    assert_explained(result)
    assert not [f for f in result.findings if f.rule == "internal.error"]
    assert [(f.tag, f.severity.value) for f in result.findings
            if f.rule == "value.other-vr-length"] == [(tag, "warning")]
