"""The gateway's Storage SCP over a real association on loopback (pynetdicom as the sender):
real files of pydicom's corpus get their real verdict, and only what is in the spool is
answered as stored."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from gateway_instances import CT_SMALL, renamed, with_pixel_data_cut, without_patient_id
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, _config

from pacs_validator.dicom.config import build_config
from pacs_validator.gateway.storage_scp import (
    VERIFICATION,
    AllowedCaller,
    GatewayOptions,
    StorageGateway,
)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[StorageGateway, int]]:
    running = StorageGateway(GatewayOptions(spool=tmp_path / "spool", port=0),
                             build_config({}))
    server = running.start()
    yield running, server.server_address[1]
    server.shutdown()
    _config.STORE_RECV_CHUNKED_DATASET = False


def send(port: int, dataset: Dataset, calling: str = "MODALITY") -> Dataset:
    """C-STORE one data set as a sender would; the status data set it got back."""
    sender = AE(ae_title=calling)
    sender.requested_contexts = StoragePresentationContexts[:120]
    association = sender.associate("127.0.0.1", port)
    assert association.is_established
    try:
        status: Dataset = association.send_c_store(dataset)
    finally:
        association.release()
    return status


def spooled(running: StorageGateway) -> list[Path]:
    return sorted(running.spool.instances.rglob("*.dcm"))


def test_c_echo_is_answered(gateway: tuple[StorageGateway, int]) -> None:
    _, port = gateway
    sender = AE(ae_title="ECHOER")
    sender.add_requested_context(VERIFICATION)
    association = sender.associate("127.0.0.1", port)
    assert association.send_c_echo().Status == 0x0000
    association.release()


def test_a_valid_instance_is_spooled_before_its_success(
        gateway: tuple[StorageGateway, int]) -> None:
    running, port = gateway
    dataset = pydicom.dcmread(CT_SMALL)

    status = send(port, dataset)

    assert status.Status in (0x0000, 0xB007)
    [kept] = spooled(running)
    assert kept.name == f"{dataset.SOPInstanceUID}.dcm"
    assert (kept.parent.name, kept.parent.parent.name) == ("1", dataset.StudyInstanceUID)
    assert kept.parent.parent.parent.name.startswith("MODALITY-")
    assert pydicom.dcmread(kept).SOPInstanceUID == dataset.SOPInstanceUID
    assert list(running.spool.incoming.iterdir()) == []


def test_a_missing_identifying_attribute_is_a9xx_naming_the_rule(
        gateway: tuple[StorageGateway, int]) -> None:
    running, port = gateway
    status = send(port, without_patient_id(pydicom.dcmread(CT_SMALL)))

    assert status.Status == 0xA900
    assert "attribute.required" in status.ErrorComment
    assert len(status.ErrorComment) <= 64
    assert spooled(running) == [] and list(running.spool.incoming.iterdir()) == []


def test_pixel_data_shorter_than_its_matrix_is_refused(
        gateway: tuple[StorageGateway, int]) -> None:
    running, port = gateway
    status = send(port, with_pixel_data_cut(pydicom.dcmread(CT_SMALL)))

    assert status.Status == 0xA900 and status.ErrorComment.startswith("pixel.")
    assert spooled(running) == []


def test_the_same_uid_with_other_bytes_is_a_duplicate_and_the_first_is_kept(
        gateway: tuple[StorageGateway, int]) -> None:
    running, port = gateway
    dataset = pydicom.dcmread(CT_SMALL)
    assert send(port, dataset).Status in (0x0000, 0xB007)
    first = spooled(running)[0].read_bytes()
    assert send(port, dataset).Status in (0x0000, 0xB007)  # the same again: acknowledged

    dataset.SeriesDescription = "sent again, changed"
    status = send(port, dataset)

    assert (status.Status, status.ErrorComment) == (0x0111, "instance.conflict")
    assert [p.read_bytes() for p in spooled(running)] == [first]


def test_a_caller_not_on_the_allow_list_is_rejected(tmp_path: Path) -> None:
    running = StorageGateway(GatewayOptions(spool=tmp_path, port=0,
                                            allowed=(AllowedCaller.parse("CT1@127.0.0.1"),)),
                             build_config({}))
    server = running.start()
    try:
        port = server.server_address[1]
        refused = AE(ae_title="INTRUDER")
        refused.add_requested_context(VERIFICATION)
        assert refused.associate("127.0.0.1", port).is_rejected
        allowed = AE(ae_title="CT1")
        allowed.add_requested_context(VERIFICATION)
        association = allowed.associate("127.0.0.1", port)
        assert association.is_established
        association.release()
    finally:
        server.shutdown()
        _config.STORE_RECV_CHUNKED_DATASET = False


def test_answers_name_rules_never_values(gateway: tuple[StorageGateway, int],
                                         caplog: pytest.LogCaptureFixture) -> None:
    _, port = gateway
    dataset = pydicom.dcmread(CT_SMALL)
    dataset.PatientName = "Doe^Jane"
    dataset.StudyDate = "20241301"

    status = send(port, dataset)

    assert "Doe" not in str(status.get("ErrorComment", ""))
    assert "20241301" not in str(status.get("ErrorComment", ""))
    gateway_lines = " ".join(record.getMessage() for record in caplog.records
                             if record.name.startswith(("pacs_validator", "pynetdicom")))
    assert "Doe" not in gateway_lines and "20241301" not in gateway_lines


DCMTK = pytest.mark.skipif(shutil.which("storescu") is None,
                           reason="no DCMTK storescu (make unit installs Debian's dcmtk as root)")


@DCMTK
def test_dcmtk_storescu_is_told_each_instance_s_real_verdict(
        gateway: tuple[StorageGateway, int], tmp_path: Path) -> None:
    running, port = gateway
    broken = renamed(without_patient_id(pydicom.dcmread(CT_SMALL)), "1.2.826.0.1.99.1")
    broken.save_as(tmp_path / "no-patient-id.dcm")

    echoed = subprocess.run(["echoscu", "-aec", "PACSVALIDATOR", "127.0.0.1", str(port)],
                            capture_output=True, text=True, timeout=60, check=False)
    sent = subprocess.run(["storescu", "-v", "-aet", "CT1", "-aec", "PACSVALIDATOR",
                           "127.0.0.1", str(port), str(CT_SMALL),
                           str(tmp_path / "no-patient-id.dcm")],
                          capture_output=True, text=True, timeout=120, check=False)

    assert echoed.returncode == 0, echoed.stderr
    responses = [line for line in sent.stderr.splitlines()
                 if "Received Store Response" in line]
    assert responses == ["I: Received Store Response (Success)",  # dciodvfy is the cloud's
                         "I: Received Store Response (Error: DataSetDoesNotMatchSOPClass)"]
    assert [p.name for p in spooled(running)] == [
        f"{pydicom.dcmread(CT_SMALL).SOPInstanceUID}.dcm"]


def test_worker_processes_judge_as_the_receiving_process_does(tmp_path: Path) -> None:
    running = StorageGateway(GatewayOptions(spool=tmp_path / "spool", port=0, judges=2),
                             build_config({}))
    server = running.start()
    try:
        valid = pydicom.dcmread(CT_SMALL)
        broken = pydicom.dcmread(CT_SMALL)
        del broken.PatientID
        broken.SOPInstanceUID = "1.2.826.0.1.99.3"
        statuses = [send(server.server_address[1], dataset) for dataset in (valid, broken)]
    finally:
        server.shutdown()
        running.intake.close()
        _config.STORE_RECV_CHUNKED_DATASET = False

    assert [(s.Status, s.get("ErrorComment")) for s in statuses] == [
        (0x0000, None), (0xA900, "attribute.required")]
    assert [p.name for p in spooled(running)] == [f"{valid.SOPInstanceUID}.dcm"]
