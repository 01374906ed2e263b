"""``pacs-validator gateway serve`` as a hospital runs it, with DCMTK's ``echoscu`` and
``storescu`` (Debian's, not ours) as the senders and the stack deployed on LocalStack behind:
a study sent with broken instances among it, each answered with its real status, ends
STORED with every accepted instance; a gateway killed with SIGKILL mid-study loses nothing
it acknowledged. dicomweb-client sends through STOW-RS, and pynetdicom as a storage
commitment SCU is told exactly what the cloud stored."""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import Deployment
from corpus_studies import reidentified_study
from dicomweb_client import DICOMwebClient
from gateway_peers import CommitmentListener, reported, request_commitment
from pydicom.uid import generate_uid
from test_upload_cli import COMMAND, CORPUS, environment

from pacs_validator.transfer.client import studies_in

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("storescu") is None,
                                 reason="no DCMTK storescu (make e2e installs Debian's dcmtk)")]
AE_TITLE, CALLING_AE = "GATE", "CT1"
VERDICT_SECONDS = 300
SENT = re.compile(r"Sending file: (\S+)")
ANSWERED = re.compile(r"Received Store Response \((.+)\)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Gateway:
    """One ``gateway serve`` process on a spool, started and stopped by the test."""

    def __init__(self, deployment: Deployment, spool: Path) -> None:
        self.deployment, self.spool, self.port = deployment, spool, free_port()
        self.process: subprocess.Popen[str] | None = None

    def start(self, *options: str) -> None:
        self.process = subprocess.Popen(
            [str(COMMAND), "gateway", "serve", "--spool", str(self.spool), "--ae-title",
             AE_TITLE, "--port", str(self.port), "--stable-seconds", "2", *options],
            env=environment(self.deployment), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        assert "listening on" in self.process.stdout.readline()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        self.process = None
        return code

    def status(self) -> list[dict[str, Any]]:
        done = subprocess.run([str(COMMAND), "gateway", "status", "--spool", str(self.spool),
                               "--json"], capture_output=True, text=True, check=True)
        entries: list[dict[str, Any]] = json.loads(done.stdout)
        return entries

    def finished(self) -> dict[str, Any]:
        """The one accepted study's entry, once the cloud's verdict is in."""
        deadline = time.monotonic() + VERDICT_SECONDS
        while time.monotonic() < deadline:
            [entry] = [e for e in self.status() if e["part"] is not None]
            if entry["stage"] == "done":
                return entry
            time.sleep(1)
        raise AssertionError(f"no verdict after {VERDICT_SECONDS} s: {entry}")


@pytest.fixture
def idle_gateway(deployment: Deployment, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway the test starts, with the options it needs; killed after if still up."""
    running = Gateway(deployment, tmp_path / "spool")
    yield running
    if running.process is not None:
        running.stop(signal.SIGKILL)


@pytest.fixture
def gateway(idle_gateway: Gateway) -> Gateway:
    idle_gateway.start()
    return idle_gateway


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the gateway's judging workers)."""
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def wait_until(condition: Any, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(condition())


def storescu(port: int, files: list[Path]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["storescu", "-v", "--no-halt", "-aet", CALLING_AE, "-aec", AE_TITLE, "127.0.0.1",
         str(port), *map(str, files)], env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def answers(output: str) -> dict[str, str]:
    """File name -> the response storescu printed for it."""
    answered: dict[str, str] = {}
    sending = None
    for line in output.splitlines():
        if match := SENT.search(line):
            sending = Path(match.group(1)).name
        elif (match := ANSWERED.search(line)) and sending is not None:
            answered[sending] = match.group(1)
    return answered


def stored_metadata(deployment: Deployment, study_id: str) -> str:
    return deployment.read(deployment.store_bucket,
                           f"studies/{study_id}/metadata.json").decode()


def broken_copies(source: Path, folder: Path) -> dict[str, Path]:
    """Two instances of ``source``'s study that storescu can read and send, each broken:
    no PatientID; pixel data far shorter than its rows and columns say."""
    folder.mkdir()
    no_patient_id, short_pixels = pydicom.dcmread(source), pydicom.dcmread(source)
    del no_patient_id.PatientID
    short_pixels.PixelData = short_pixels.PixelData[:100]
    broken = {"no-patient-id": no_patient_id, "short-pixels": short_pixels}
    for name, dataset in broken.items():
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.save_as(folder / f"{name}.dcm")
    return {name: folder / f"{name}.dcm" for name in broken}


def test_echoscu_and_storescu_send_a_study_with_broken_instances_that_ends_stored(
        deployment: Deployment, gateway: Gateway, tmp_path: Path) -> None:
    echo = subprocess.run(["echoscu", "-aet", CALLING_AE, "-aec", AE_TITLE, "127.0.0.1",
                           str(gateway.port)], capture_output=True, text=True, check=False)
    assert echo.returncode == 0, echo.stdout + echo.stderr
    study = max(studies_in(CORPUS / "dicomdirtests" / "98892003").values(), key=len)
    broken = broken_copies(study[0], tmp_path / "broken")

    sender = storescu(gateway.port, [*study, *broken.values()])
    output, _ = sender.communicate(timeout=300)

    answered = answers(output)
    assert answered["no-patient-id.dcm"] == "Error: DataSetDoesNotMatchSOPClass", output
    assert answered["short-pixels.dcm"] == "Error: DataSetDoesNotMatchSOPClass", output
    assert {answered[path.name] for path in study} <= {
        "Success", "Warning: DataSetDoesNotMatchSOPClass"}, output
    entry = gateway.finished()
    assert (entry["state"], entry["received"], entry["uploaded"]) == (
        "STORED", len(study), len(study))
    assert sorted((r["status"], r["rules"]) for r in entry["refused"]) == [
        ("0xA900", "attribute.required"), ("0xA900", "pixel.native-length")]
    metadata = stored_metadata(deployment, entry["study_id"])
    assert all(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) in metadata
               for p in study)
    assert gateway.stop() == 0  # SIGTERM: drained, exit 0


def test_a_gateway_killed_mid_study_stores_every_instance_it_acknowledged(
        deployment: Deployment, gateway: Gateway, tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    files = []
    for name, data in reidentified_study(60, series=1, seed=f"killed-{time.time()}"):
        dataset = pydicom.dcmread(io.BytesIO(data))
        if dataset.file_meta.TransferSyntaxUID.is_compressed:
            continue  # storescu would convert it, or ask for it as it is: not this test's
        files.append(folder / name)
        files[-1].write_bytes(data)
    sender = storescu(gateway.port, files)
    assert sender.stdout is not None
    lines: list[str] = []
    for line in sender.stdout:
        lines.append(line)
        if len(answers("".join(lines))) == 10:
            break
    assert gateway.process is not None
    workers = children(gateway.process.pid)
    assert gateway.stop(signal.SIGKILL) == -signal.SIGKILL
    answered = answers("".join(lines) + sender.communicate(timeout=60)[0])
    kept = [name for name, answer in answered.items()
            if answer in ("Success", "Warning: DataSetDoesNotMatchSOPClass")]
    assert len(kept) >= 10 and len(answered) < len(files)

    assert workers and wait_until(lambda: not any(Path(f"/proc/{pid}").exists()
                                                  for pid in workers))  # no orphan judges
    gateway.start()  # the sender sends nothing again
    entry = gateway.finished()

    assert entry["state"] == "STORED" and entry["received"] >= len(kept)
    metadata = stored_metadata(deployment, entry["study_id"])
    uids = {name: str(pydicom.dcmread(folder / name).SOPInstanceUID) for name in kept}
    assert [name for name, uid in uids.items() if uid not in metadata] == []


def test_dicomweb_client_stores_through_stow_rs_and_a_commitment_names_what_was_stored(
        idle_gateway: Gateway, tmp_path: Path) -> None:
    token = secrets.token_hex(32)
    (tmp_path / "tokens").write_text(f"{CALLING_AE} {token}\n")
    listener = CommitmentListener()
    http_port = free_port()
    idle_gateway.start("--http-port", str(http_port), "--stow-token-file",
                       str(tmp_path / "tokens"), "--commit-to",
                       f"{CALLING_AE}=127.0.0.1:{listener.port}")
    datasets = [pydicom.dcmread(io.BytesIO(data)) for _, data in
                reidentified_study(3, series=1, seed=f"stow-{time.time()}")]
    broken = pydicom.dcmread(io.BytesIO(next(reidentified_study(1, seed="stow-broken"))[1]))
    broken.StudyInstanceUID = datasets[0].StudyInstanceUID
    del broken.PatientID
    client = DICOMwebClient(f"http://127.0.0.1:{http_port}",
                            headers={"Authorization": f"Bearer {token}"})
    try:
        answer = client.store_instances([*datasets, broken])
        entry = idle_gateway.finished()
        assert request_commitment(idle_gateway.port, [
            (d.SOPClassUID, d.SOPInstanceUID) for d in [*datasets, broken]]) == 0x0000
        deadline = time.monotonic() + 60
        while not listener.reports and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        listener.server.shutdown()

    assert sorted(i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence) == sorted(
        d.SOPInstanceUID for d in datasets)
    [failed] = answer.FailedSOPSequence
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (
        broken.SOPInstanceUID, 0xA900)
    assert (entry["state"], entry["received"], entry["calling_ae"]) == ("STORED", 3, CALLING_AE)
    [(event_type, report)] = listener.reports
    assert event_type == 2  # some failed: the one never accepted
    assert reported(report, "ReferencedSOPSequence") == sorted(
        (d.SOPInstanceUID,) for d in datasets)
    assert reported(report, "FailedSOPSequence") == [(broken.SOPInstanceUID, "0x0112")]
