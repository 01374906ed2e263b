"""The gateway against peers that do not play by the rules (pynetdicom as the peer): a
connection dropped mid-instance, more associations at once than it takes, a spool without
room, and fuzzed data sets. Each gets a refusal or a status, nothing is left behind, and
the gateway goes on answering."""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from gateway_peers import crowd, echoes
from pydicom.data import get_testdata_file
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config

from pacs_validator.dicom.config import build_config
from pacs_validator.gateway import spool as spool_module
from pacs_validator.gateway.spool import RESERVE_BYTES, read_refusals
from pacs_validator.gateway.storage_scp import GatewayOptions, StorageGateway

FUZZED_BASES = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm",
                "MR_small_bigendian.dcm", "rtdose.dcm", "SC_rgb.dcm")
"""Uncompressed files of pydicom's corpus, in each byte order and VR encoding."""


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[StorageGateway, int, Path]]:
    """A gateway whose received data sets (pynetdicom's temporary files) go to a folder of
    the test's own, to see what is left there."""
    receiving = tmp_path / "receiving"
    receiving.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(receiving))
    running = StorageGateway(GatewayOptions(spool=tmp_path / "spool", port=0,
                                            max_associations=10), build_config({}))
    server = running.start()
    yield running, server.server_address[1], receiving
    server.shutdown()
    _config.STORE_RECV_CHUNKED_DATASET = False


def sender_for(*datasets: pydicom.Dataset) -> AE:
    sender = AE(ae_title="HOSTILE")
    for sop_class, syntax in {(d.SOPClassUID, d.file_meta.TransferSyntaxUID)
                              for d in datasets}:
        sender.add_requested_context(sop_class, syntax)
    return sender


def wait_for(condition: Any, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


def test_a_connection_dropped_mid_instance_leaves_no_file_behind(
        gateway: tuple[StorageGateway, int, Path], tmp_path: Path) -> None:
    running, port, receiving = gateway
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PixelData = bytes(64 * 1024 * 1024)
    dataset.Rows = dataset.Columns = 4096
    path = tmp_path / "large.dcm"
    dataset.save_as(path)
    association = sender_for(dataset).associate("127.0.0.1", port)
    assert association.is_established
    sending = threading.Thread(target=association.send_c_store, args=(path,), daemon=True)
    sending.start()

    assert wait_for(lambda: any(p.stat().st_size > 1024 * 1024 for p in receiving.iterdir()))
    association.dul.socket.socket.close()  # the peer vanishes mid-data-set

    assert wait_for(lambda: not list(receiving.iterdir())), list(receiving.iterdir())
    assert list(running.spool.instances.rglob("*.dcm")) == []
    assert echoes(port)


def test_more_associations_at_once_than_allowed_are_refused_and_the_gateway_stays_up(
        gateway: tuple[StorageGateway, int, Path]) -> None:
    _, port, _ = gateway

    outcomes = crowd(port, 200, hold_seconds=30)

    assert outcomes["established"] <= 10 and outcomes["rejected"] >= 180, outcomes
    assert wait_for(lambda: echoes(port))


def test_an_instance_the_spool_has_no_room_for_is_out_of_resources(
        gateway: tuple[StorageGateway, int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    running, port, _ = gateway
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    usage = shutil.disk_usage(running.spool.root)
    monkeypatch.setattr(spool_module.shutil, "disk_usage",
                        lambda path: usage._replace(free=RESERVE_BYTES + 1024))
    association = sender_for(dataset).associate("127.0.0.1", port)

    status = association.send_c_store(dataset)
    association.release()

    assert (status.Status, status.ErrorComment) == (0xA700, "gateway.spool-full")
    assert list(running.spool.instances.rglob("*.dcm")) == []
    [refusal] = read_refusals(running.spool.root)
    assert (refusal["status"], refusal["rules"]) == ("0xA700", "gateway.spool-full")


def fuzzed(base: Path, rng: random.Random, folder: Path, index: int) -> Path:
    """``base`` with its data set (after the file meta, which the sender reads) broken:
    bytes overwritten, cut short, or a stretch repeated."""
    data = bytearray(base.read_bytes())
    # preamble and DICM (132 bytes), the group length element (12), then the group
    start = 144 + int(read_file_meta_info(base).FileMetaInformationGroupLength)
    kind = rng.choice(("overwrite", "truncate", "repeat"))
    if kind == "overwrite":
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(start, min(len(data), start + 4096))] = rng.randrange(256)
    elif kind == "truncate":
        del data[rng.randrange(start + 1, len(data)):]
    else:
        at = rng.randrange(start, len(data) - 64)
        data[at:at] = data[at:at + rng.randint(1, 64)] * rng.randint(2, 50)
    path = folder / f"{index:05d}-{kind}.dcm"
    path.write_bytes(bytes(data))
    return path


def test_fuzzed_instances_each_get_a_status_and_the_gateway_answers_after(
        gateway: tuple[StorageGateway, int, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, port, receiving = gateway
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # its bytes, as they are
    rng = random.Random(34)
    bases = [Path(get_testdata_file(name)) for name in FUZZED_BASES]
    folder = tmp_path / "fuzzed"
    folder.mkdir()
    templates = [pydicom.dcmread(base, stop_before_pixels=True) for base in bases]
    association = sender_for(*templates).associate("127.0.0.1", port)
    statuses: Counter[int] = Counter()
    for index in range(300):
        path = fuzzed(bases[index % len(bases)], rng, folder, index)
        status = association.send_c_store(path)
        assert "Status" in status, path.name
        statuses[int(status.Status)] += 1
    association.release()

    assert sum(statuses.values()) == 300
    assert set(statuses) <= {0x0000, 0xB007, 0xA900, 0xC000, 0xA700, 0x0111}, statuses
    assert statuses[0xC000] + statuses[0xA900] > 0
    assert 0x0110 not in statuses  # no fuzzed file made the gateway fail itself
    assert wait_for(lambda: not list(receiving.iterdir()))
    assert echoes(port)
