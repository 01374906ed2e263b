"""Property: no byte-level damage to a real file makes the validator crash or answer vaguely.

Whatever the bytes, ``validate_instance`` returns a verdict with a contract status, and any
verdict other than 200 is explained by at least one error finding of a catalogued rule.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacs_validator.config import build_config
from pacs_validator.rules import rule_ids
from pacs_validator.validation import validate_instance

SEEDS = ("MR_small.dcm", "rtplan.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm")
SEED_BYTES = {
    name: (Path(pydicom.__file__).parent / "data" / "test_files" / name).read_bytes()
    for name in SEEDS
}
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
