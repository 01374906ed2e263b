"""The gateway's spool on its own: study parts, when they may close, and what a restart
finds, with pydicom's CT_small.dcm as every instance."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from pacs_validator.gateway import spool as spool_module
from pacs_validator.gateway.spool import Kept, Spool, Stage, file_digest, read_refusals

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
SHA = file_digest(CT_SMALL)


def keep(spool: Spool, sop: str, association: object = "a1", study: str = "1.2.3") -> Kept:
    return spool.keep(CT_SMALL, "CT1", study, sop, SHA, association)


def test_a_part_closes_only_once_its_associations_ended_and_the_stable_time_passed(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    keep(spool, "1.1", "a1")
    keep(spool, "1.2", "a2")
    [part] = spool.parts()
    later = part.last_arrival + 60

    assert spool.closable(60, later) == []  # both associations still open
    spool.ended("a1")
    assert spool.closable(60, later) == []
    spool.ended("a2")
    assert spool.closable(60, later - 1) == []  # not stable long enough
    assert spool.closable(60, later) == [part]


def test_an_instance_after_the_close_opens_the_next_part_and_one_sent_again_is_the_same(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    keep(spool, "1.1")
    spool.ended("a1")
    [first] = spool.closable(0, first_time := spool.parts()[0].last_arrival)
    spool.close(first)

    assert keep(spool, "1.1") is Kept.SAME  # in the closed part already
    assert keep(spool, "1.2") is Kept.STORED
    second = next(part for part in spool.parts() if part is not first)
    assert (first.stage, second.stage, second.number) == (Stage.CLOSED, Stage.RECEIVING, 2)
    assert list(second.instances) == ["1.2"] and second.last_arrival >= first_time


def test_a_restart_finds_every_part_at_its_recorded_stage_and_drops_half_made_copies(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    keep(spool, "1.1")
    keep(spool, "1.2", study="1.2.4")
    closed = next(part for part in spool.parts() if part.study_instance_uid == "1.2.4")
    spool.close(closed)
    (spool.incoming / "interrupted.part").write_bytes(b"half")

    restarted = Spool(tmp_path)

    found = {part.study_instance_uid: part for part in restarted.parts()}
    assert (found["1.2.3"].stage, found["1.2.4"].stage) == (Stage.RECEIVING, Stage.CLOSED)
    assert found["1.2.3"].instances == {"1.1": SHA}
    assert list(restarted.incoming.iterdir()) == []
    assert keep(restarted, "1.1") is Kept.SAME


def test_a_restart_gives_a_receiving_part_the_stable_time_again(tmp_path: Path) -> None:
    keep(Spool(tmp_path), "1.1")
    an_hour_ago = time.time() - 3600
    for kept in tmp_path.rglob("*.dcm"):  # the instance arrived long before the crash
        os.utime(kept, (an_hour_ago, an_hour_ago))

    restarted = Spool(tmp_path)

    assert restarted.closable(60, time.time()) == []
    assert len(restarted.closable(60, time.time() + 60)) == 1


def test_the_refusals_kept_are_bounded_and_the_latest(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "REFUSALS_MAX_BYTES", 2048)
    spool = Spool(tmp_path / "spool")

    for index in range(100):
        spool.refused("CT1", "1.2.3", f"1.2.3.{index}", 0xA900, "attribute.required")

    kept = read_refusals(spool.root)
    sizes = [p.stat().st_size for p in spool.root.glob("refused*.jsonl")]
    assert len(sizes) == 2 and all(size <= 2048 + 256 for size in sizes)
    assert kept[-1]["sop_instance_uid"] == "1.2.3.99"
    assert [r["sop_instance_uid"] for r in kept] == [
        f"1.2.3.{index}" for index in range(100 - len(kept), 100)]
