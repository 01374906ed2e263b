"""The gateway's studies on their way to the cloud: instances sent over a real association
(pynetdicom as the sender), then each study part declared, uploaded and followed through the
API on moto (``test_upload``'s harness), and taken up where it was after a crash."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import API_TOKEN, UPLOADS
from corpus_studies import reidentified_study
from gateway_peers import CommitmentListener, reported, request_commitment
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from test_gateway_store import gateway  # noqa: F401 - a fixture
from test_upload import Api, api, in_tmp  # noqa: F401 - fixtures

from pacs_validator.cli.main import main
from pacs_validator.dicom.config import build_config
from pacs_validator.gateway.commitment import FIRST_RETRY_SECONDS as COMMITMENT_FIRST_RETRY_SECONDS
from pacs_validator.gateway.commitment import (
    Commitments,
)
from pacs_validator.gateway.forwarding import FIRST_RETRY_SECONDS, Forwarder
from pacs_validator.gateway.spool import Spool, Stage, StudyPart
from pacs_validator.gateway.storage_scp import GatewayOptions, StorageGateway
from pacs_validator.transfer.client import ApiError, PacsClient

CALLING_AE = "CT1"


def study(instances: int, seed: str = "forwarded") -> list[Dataset]:
    return [pydicom.dcmread(io.BytesIO(data)) for _, data in reidentified_study(instances,
                                                                                 seed=seed)]


def send(port: int, datasets: list[Dataset]) -> list[int]:
    """C-STORE every data set over one association; the status of each."""
    sender = AE(ae_title=CALLING_AE)
    for sop_class, syntax in {(d.SOPClassUID, d.file_meta.TransferSyntaxUID) for d in datasets}:
        sender.add_requested_context(sop_class, syntax)
    association = sender.associate("127.0.0.1", port)
    assert association.is_established
    try:
        return [int(association.send_c_store(dataset).Status) for dataset in datasets]
    finally:
        association.release()


def wait_until_ended(running: StorageGateway) -> None:
    """The association's end reaches the spool from pynetdicom's thread, soon after the
    release."""
    deadline = time.monotonic() + 5
    while not running.spool.closable(0, time.time()) and time.monotonic() < deadline:
        time.sleep(0.02)


def forward(forwarder: Forwarder, steps: int = 10) -> StudyPart:
    """Step the forwarder (the harness runs the pipeline before each API answer) until the
    only part is done; that part."""
    for _ in range(steps):
        forwarder.step(time.time())
        [part] = forwarder.spool.parts()
        if part.stage is Stage.DONE:
            return part
    raise AssertionError(f"the part is still {part.stage.value}")


def killed_during_step(forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch,
                       target: type, name: str) -> None:
    """Step ``forwarder`` as a gateway killed when it calls ``target.name``."""
    with monkeypatch.context() as crash:
        crash.setattr(target, name, lambda *_: (_ for _ in ()).throw(SystemExit))
        with pytest.raises(SystemExit):
            forwarder.step(time.time())


def declarations(harness: Api) -> int:
    return sum(1 for method, path in harness.gateway.calls if (method, path) == ("POST", "/upload"))


def client(harness: Api) -> PacsClient:
    return PacsClient(harness.url, token=API_TOKEN, retries=0)


def test_a_sent_study_is_declared_uploaded_and_stored_once(
        api: Api, in_tmp: Path, gateway: tuple[StorageGateway, int],  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    running, port = gateway
    datasets = study(8)
    assert set(send(port, datasets)) <= {0x0000, 0xB007}
    wait_until_ended(running)

    part = forward(Forwarder(running.spool, client(api), stable_seconds=0))

    assert (part.state, part.uploaded, part.failures) == ("STORED", 8, {})
    assert declarations(api) == 1
    status = client(api).full_status(str(part.study_id))
    assert sorted(f["name"] for f in status["files"]) == sorted(
        f"{d.SOPInstanceUID}.dcm" for d in datasets)
    assert list(running.spool.instances.rglob("*.dcm")) == []  # stored: the cloud keeps them
    capsys.readouterr()
    assert main(["gateway", "status", "--spool", str(running.spool.root), "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry == {"study_instance_uid": datasets[0].StudyInstanceUID,
                     "calling_ae": CALLING_AE, "part": 1, "stage": "done", "received": 8,
                     "refused": [], "uploaded": 8, "study_id": part.study_id,
                     "state": "STORED", "problem": None, "not_stored": 0}


def test_a_gateway_killed_after_declaring_sends_the_files_to_that_study(
        api: Api, in_tmp: Path, gateway: tuple[StorageGateway, int],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    running, port = gateway
    send(port, study(6))
    wait_until_ended(running)
    killed_during_step(Forwarder(running.spool, client(api), stable_seconds=0), monkeypatch,
                       Forwarder, "_send")
    [declared] = running.spool.parts()
    assert declared.stage is Stage.DECLARED

    restarted = Spool(running.spool.root)
    part = forward(Forwarder(restarted, client(api), stable_seconds=0))

    assert (part.state, part.study_id, part.uploaded) == ("STORED", declared.study_id, 6)
    assert declarations(api) == 1


def test_a_gateway_killed_before_recording_its_declaration_declares_the_same_study(
        api: Api, in_tmp: Path, gateway: tuple[StorageGateway, int],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    running, port = gateway
    send(port, study(3))
    wait_until_ended(running)
    declared: list[str] = []
    original = PacsClient.declare

    def recorded(self: PacsClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = original(self, *args, **kwargs)
        declared.append(str(answer["study_id"]))
        return answer

    monkeypatch.setattr(PacsClient, "declare", recorded)
    # the API answered; the record is not written
    killed_during_step(Forwarder(running.spool, client(api), stable_seconds=0), monkeypatch,
                       Spool, "save")

    part = forward(Forwarder(Spool(running.spool.root), client(api), stable_seconds=0))

    assert (part.state, part.uploaded) == ("STORED", 3)
    assert declarations(api) == 2 and declared == [part.study_id, part.study_id]


def test_a_partly_sent_study_resumes_with_only_the_files_the_cloud_lacks(
        api: Api, in_tmp: Path, gateway: tuple[StorageGateway, int],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    running, port = gateway
    send(port, study(6))
    wait_until_ended(running)
    posted: list[str] = []
    original = PacsClient.send_file

    def every_other_refused(self: PacsClient, form: Any, name: str, *args: Any) -> None:
        if len(posted) % 2:
            posted.append("refused")
            raise ApiError(503, "unavailable")
        posted.append(name)
        original(self, form, name, *args)

    forwarder = Forwarder(running.spool, client(api), stable_seconds=0)
    with monkeypatch.context() as outage:
        outage.setattr(PacsClient, "send_file", every_other_refused)
        forwarder.step(time.time())
    [part] = running.spool.parts()
    assert (part.stage, part.uploaded, part.problem) == (
        Stage.DECLARED, 3, "3 of 6 file(s) not sent")

    forwarder.step(time.time())  # too soon: the failed step waits
    assert part.stage is Stage.DECLARED
    posts_before = len(api.gateway.stack.keys(UPLOADS, "incoming/"))
    forwarder.step(time.time() + FIRST_RETRY_SECONDS)
    forward(forwarder)

    assert (part.state, part.uploaded) == ("STORED", 6)
    assert len(api.gateway.stack.keys(UPLOADS, "incoming/")) - posts_before == 3
    assert declarations(api) == 1


def test_an_unreachable_api_is_a_problem_the_part_says_and_tries_again(
        api: Api, in_tmp: Path, gateway: tuple[StorageGateway, int]) -> None:  # noqa: F811
    running, port = gateway
    send(port, study(2))
    wait_until_ended(running)

    Forwarder(running.spool, PacsClient("http://127.0.0.1:9", retries=0),
              stable_seconds=0).step(time.time())

    [part] = Spool(running.spool.root).parts()
    assert (part.stage, part.study_id) == (Stage.CLOSED, None)
    assert part.problem == "the API could not be reached (URLError)"
    restarted = Forwarder(Spool(running.spool.root), client(api), stable_seconds=0)
    assert forward(restarted).state == "STORED"


def test_a_study_the_cloud_rejects_keeps_its_files_and_says_so(
        api: Api, in_tmp: Path, gateway: tuple[StorageGateway, int],  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    running, port = gateway
    datasets = study(4, seed="disagreeing")
    datasets[1].PatientID = "SOMEONE-ELSE"  # each file is fine; the study disagrees
    broken = study(1, seed="broken")[0]
    broken.StudyInstanceUID = datasets[0].StudyInstanceUID
    del broken.PatientID
    statuses = send(port, [*datasets, broken])
    assert statuses[-1] == 0xA900 and set(statuses[:-1]) <= {0x0000, 0xB007}
    wait_until_ended(running)

    part = forward(Forwarder(running.spool, client(api), stable_seconds=0))

    assert part.state == "REJECTED"
    assert len(list(running.spool.instances.rglob("*.dcm"))) == 4
    capsys.readouterr()
    assert main(["gateway", "status", "--spool", str(running.spool.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"{CALLING_AE}  {datasets[0].StudyInstanceUID}  part 1: received 4, "
                        f"refused 1, uploaded 4, {part.study_id} REJECTED")
    assert lines[1].startswith("    refused 1: 0xA900 attribute.")


def test_status_refuses_a_folder_that_is_no_spool(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "status", "--spool", str(tmp_path)]) == 2
    assert "is not a gateway's spool" in capsys.readouterr().err


@pytest.fixture
def listener() -> Iterator[CommitmentListener]:
    running = CommitmentListener()
    yield running
    running.server.shutdown()


@pytest.fixture
def committing_gateway(tmp_path: Path, listener: CommitmentListener
                       ) -> Iterator[tuple[StorageGateway, int]]:
    options = GatewayOptions(spool=tmp_path / "spool", port=0,
                             commit_to={CALLING_AE: ("127.0.0.1", listener.port)})
    running = StorageGateway(options, build_config({}))
    server = running.start()
    yield running, server.server_address[1]
    server.shutdown()
    _config.STORE_RECV_CHUNKED_DATASET = False


def test_a_commitment_report_commits_exactly_what_the_cloud_stored(
        api: Api, in_tmp: Path, committing_gateway: tuple[StorageGateway, int],  # noqa: F811
        listener: CommitmentListener) -> None:
    running, port = committing_gateway
    datasets = study(4, seed="committed")
    refused = study(1, seed="refused")[0]
    refused.StudyInstanceUID = datasets[0].StudyInstanceUID
    del refused.PatientID
    assert send(port, [*datasets, refused])[-1] == 0xA900
    never_sent = (datasets[0].SOPClassUID, generate_uid())
    asked = [(d.SOPClassUID, d.SOPInstanceUID) for d in [*datasets, refused]]

    assert request_commitment(port, [*asked, never_sent]) == 0x0000
    running.commitments.step(time.time())
    assert listener.reports == []  # the cloud's verdict is not in yet

    wait_until_ended(running)
    forward(Forwarder(running.spool, client(api), stable_seconds=0))
    restarted = Commitments(Spool(running.spool.root), running.report_commitment)
    restarted.step(time.time())

    [(event_type, report)] = listener.reports  # reported by a restarted gateway
    assert event_type == 2  # some failed
    assert reported(report, "ReferencedSOPSequence") == sorted(
        (d.SOPInstanceUID,) for d in datasets)
    assert reported(report, "FailedSOPSequence") == sorted(
        [(refused.SOPInstanceUID, "0x0112"), (never_sent[1], "0x0112")])
    restarted.step(time.time())
    assert len(listener.reports) == 1  # reported once
    assert list((running.spool.root / "commitments").iterdir()) == []  # nothing left to read


def test_instances_of_a_rejected_study_are_not_committed(
        api: Api, in_tmp: Path, committing_gateway: tuple[StorageGateway, int],  # noqa: F811
        listener: CommitmentListener) -> None:
    running, port = committing_gateway
    datasets = study(3, seed="rejected-commitment")
    datasets[1].PatientID = "SOMEONE-ELSE"
    send(port, datasets)
    wait_until_ended(running)
    assert forward(Forwarder(running.spool, client(api), stable_seconds=0)).state == "REJECTED"

    request_commitment(port, [(d.SOPClassUID, d.SOPInstanceUID) for d in datasets])
    running.commitments.step(time.time())

    [(event_type, report)] = listener.reports
    assert (event_type, reported(report, "ReferencedSOPSequence")) == (2, [])
    assert reported(report, "FailedSOPSequence") == sorted(
        (d.SOPInstanceUID, "0x0110") for d in datasets)


def test_a_report_the_sender_does_not_acknowledge_is_sent_again_later(
        api: Api, in_tmp: Path, committing_gateway: tuple[StorageGateway, int],  # noqa: F811
        listener: CommitmentListener) -> None:
    running, port = committing_gateway
    datasets = study(2, seed="unacknowledged")
    send(port, datasets)
    wait_until_ended(running)
    forward(Forwarder(running.spool, client(api), stable_seconds=0))
    request_commitment(port, [(d.SOPClassUID, d.SOPInstanceUID) for d in datasets])
    listener.answer = 0x0110  # the sender failed to process it

    running.commitments.step(time.time())
    [kept] = (running.spool.root / "commitments").iterdir()
    assert json.loads(kept.read_text())["attempts"] == 1
    running.commitments.step(time.time())  # too soon: it waits
    listener.answer = 0x0000
    running.commitments.step(time.time() + COMMITMENT_FIRST_RETRY_SECONDS)

    assert [event_type for event_type, _ in listener.reports] == [1, 1]  # all committed
    assert list((running.spool.root / "commitments").iterdir()) == []
