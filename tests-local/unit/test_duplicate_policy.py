"""How a valid study's instances are sorted against the index of stored instances."""

from __future__ import annotations

from typing import Any

import pytest

from pacs_validator.contract.duplicates import DuplicatePolicy, StoredInstance
from pacs_validator.dicom.config import build_config
from pacs_validator.flow.duplicates import instance_records, sort_duplicates

CONFIG = build_config({})
EARLIER = "a" * 32
OTHER = "b" * 32


def record(name: str, uid: str, sha256: str) -> dict[str, Any]:
    return {"name": name, "sha256": sha256, "summary": {"sop_instance_uid": uid}}


def stored(uid: str, sha256: str, study_id: str = EARLIER, version: int = 1) -> StoredInstance:
    return StoredInstance(uid, study_id, sha256, version)


def test_instance_records_keep_the_first_file_of_each_sop_instance() -> None:
    records = [record("b.dcm", "1.2", "x"), record("a.dcm", "1.2", "y"),
               record("c.dcm", "1.3", "z"), {"name": "d", "summary": {"sop_instance_uid": None}}]
    assert {uid: r["name"] for uid, r in instance_records(records).items()} == {
        "1.2": "b.dcm", "1.3": "c.dcm"}


def test_a_study_with_nothing_stored_before_has_no_duplicates() -> None:
    instances = instance_records([record("a.dcm", "1.2", "x")])
    duplicates = sort_duplicates(instances, {}, DuplicatePolicy.REFUSE, CONFIG)
    assert (duplicates.acknowledged, duplicates.findings, duplicates.stored_as) == (
        frozenset(), (), None)


def test_every_instance_identical_answers_with_the_study_holding_most() -> None:
    instances = instance_records([record("a", "1.1", "x"), record("b", "1.2", "y"),
                                  record("c", "1.3", "z")])
    index = {"1.1": stored("1.1", "x", OTHER), "1.2": stored("1.2", "y"),
             "1.3": stored("1.3", "z")}
    duplicates = sort_duplicates(instances, index, DuplicatePolicy.REFUSE, CONFIG)
    assert duplicates.acknowledged == {"a", "b", "c"}
    assert duplicates.stored_as == EARLIER
    assert [f.message.split(" ")[0] for f in duplicates.findings] == ["2", "1"]
    assert {f.rule for f in duplicates.findings} == {"instance.duplicate"}


@pytest.mark.parametrize(("policy", "rule", "severity", "versions"), [
    (DuplicatePolicy.REFUSE, "instance.conflict", "error", {}),
    (DuplicatePolicy.VERSION, "instance.new-version", "warning", {"a": 3}),
])
def test_other_bytes_under_a_stored_uid_are_refused_or_versioned(
        policy: DuplicatePolicy, rule: str, severity: str, versions: dict[str, int]) -> None:
    instances = instance_records([record("a", "1.1", "new"), record("b", "1.2", "y")])
    index = {"1.1": stored("1.1", "old", version=2), "1.2": stored("1.2", "y")}
    duplicates = sort_duplicates(instances, index, policy, CONFIG)
    assert (duplicates.conflicts, dict(duplicates.versions), duplicates.stored_as) == (
        1, versions, None)
    assert duplicates.acknowledged == {"b"}
    [conflict] = [f for f in duplicates.findings if f.rule == rule]
    assert conflict.severity.value == severity
    assert "1.1" not in conflict.message and EARLIER in conflict.message


def test_a_file_without_a_digest_is_never_taken_for_the_stored_one() -> None:
    instances = instance_records([record("a", "1.1", "")])
    duplicates = sort_duplicates(instances, {"1.1": stored("1.1", "")},
                                 DuplicatePolicy.REFUSE, CONFIG)
    assert (duplicates.acknowledged, duplicates.conflicts) == (frozenset(), 1)
