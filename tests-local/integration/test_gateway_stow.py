"""The gateway's STOW-RS door over real HTTP on loopback, with dicomweb-client as the sender
(and requests, for the bodies a well-behaved client never sends): each instance gets the
verdict C-STORE would give it, and only what is in the spool is answered as stored."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dicomweb_client import DICOMwebClient
from gateway_instances import (
    CT_SMALL,
    MR_SMALL,
    encoded,
    renamed,
    truncated,
    with_pixel_data_cut,
    without_patient_id,
)
from pydicom.dataset import Dataset

from pacs_validator.cli.main import main
from pacs_validator.dicom.config import build_config
from pacs_validator.gateway.intake import Taken
from pacs_validator.gateway.storage_scp import GatewayOptions, StorageGateway
from pacs_validator.gateway.stow import PRIVATE_CREATOR, PRIVATE_GROUP, StowOptions, StowServer
from pacs_validator.gateway.tokens import BearerTokens

TOKEN = "s3cret-token-of-the-ct-room-0123456789"
DICOM_PARTS = 'multipart/related; type="application/dicom"; boundary=b0undary'


@dataclass
class Door:
    gateway: StorageGateway
    server: StowServer

    @property
    def url(self) -> str:
        scheme = "https" if self.server.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def client(self, token: str = TOKEN, chunk_size: int = 10**6,
               session: requests.Session | None = None) -> DICOMwebClient:
        return DICOMwebClient(self.url, headers={"Authorization": f"Bearer {token}"},
                              chunk_size=chunk_size, session=session)

    def spooled(self) -> list[Path]:
        return sorted(self.gateway.spool.instances.rglob("*.dcm"))

    def leftovers(self) -> list[Path]:
        return list(self.gateway.spool.incoming.iterdir())


def start_door(tmp_path: Path, tls: tuple[Path, Path] | None = None, **limits: int) -> Door:
    """A gateway on port 0 and its STOW-RS door, with ``limits`` (``max_bytes``, ...)."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# label token\nCT-ROOM {TOKEN}\n", "utf-8")
    certificate, key = tls or (None, None)
    gateway = StorageGateway(GatewayOptions(spool=tmp_path / "spool", port=0,
                                            certificate=certificate, key=key),
                             build_config({}))
    return Door(gateway, gateway.start_stow(StowOptions(0, BearerTokens.read(tokens), **limits)))


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Door]:
    running = start_door(tmp_path)
    yield running
    running.server.stop()


def multipart(parts: list[bytes], part_type: str = "application/dicom") -> bytes:
    return b"".join(b"--b0undary\r\nContent-Type: " + part_type.encode() + b"\r\n\r\n"
                    + part + b"\r\n" for part in parts) + b"--b0undary--\r\n"


def post(door: Door, body: bytes, path: str = "/studies", content_type: str = DICOM_PARTS,
         token: str = TOKEN) -> requests.Response:
    return requests.post(door.url + path, data=body, timeout=30,
                         headers={"Content-Type": content_type,
                                  "Authorization": f"Bearer {token}"})


def refused(raised: pytest.ExceptionInfo[requests.HTTPError]) -> requests.Response:
    """The answer dicomweb-client raised for."""
    assert raised.value.response is not None
    return raised.value.response


def comment(item: Dataset) -> str:
    """The rule ids the gateway put in an item (its private Error Comment)."""
    return str(item.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[0x02].value)


def failures(response: requests.Response) -> list[tuple[int, str]]:
    answer = Dataset.from_json(response.json())
    return [(item.FailureReason, comment(item)) for item in answer.FailedSOPSequence]


def test_instances_all_accepted_are_200_each_referenced_and_spooled(door: Door) -> None:
    ct, mr = pydicom.dcmread(CT_SMALL), pydicom.dcmread(MR_SMALL)

    answer = door.client().store_instances([ct, mr])

    assert [(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID)
            for item in answer.ReferencedSOPSequence] == [
        (ct.SOPClassUID, ct.SOPInstanceUID), (mr.SOPClassUID, mr.SOPInstanceUID)]
    assert "FailedSOPSequence" not in answer
    assert sorted(p.name for p in door.spooled()) == sorted(
        f"{uid}.dcm" for uid in (ct.SOPInstanceUID, mr.SOPInstanceUID))
    assert {p.parent.parent.parent.name.split("-")[0] for p in door.spooled()} == {"CT"}
    assert door.leftovers() == []


def test_a_warning_is_accepted_with_its_warning_reason_and_rules(door: Door) -> None:
    """CT_small without a Type 2 attribute breaks a check that only warns: stored, and
    told so."""
    dataset = pydicom.dcmread(CT_SMALL)
    del dataset.AccessionNumber
    [item] = door.client().store_instances([dataset]).ReferencedSOPSequence

    assert item.WarningReason == 0xB007
    assert comment(item) == "iod.type2"
    assert len(door.spooled()) == 1


def test_one_broken_instance_is_202_with_its_failure_reason(door: Door) -> None:
    good = pydicom.dcmread(CT_SMALL)
    broken = renamed(without_patient_id(pydicom.dcmread(CT_SMALL)), "1.2.826.0.1.99.2")

    answer = door.client().store_instances([good, broken])

    [stored] = answer.ReferencedSOPSequence
    [failed] = answer.FailedSOPSequence
    assert stored.ReferencedSOPInstanceUID == good.SOPInstanceUID
    assert (failed.ReferencedSOPClassUID, failed.ReferencedSOPInstanceUID) == (
        broken.SOPClassUID, broken.SOPInstanceUID)
    assert failed.FailureReason == 0xA900 and "attribute.required" in comment(failed)
    assert [p.name for p in door.spooled()] == [f"{good.SOPInstanceUID}.dcm"]


def test_a_partly_failed_request_is_202_on_the_wire(door: Door) -> None:
    good = encoded(pydicom.dcmread(CT_SMALL))

    response = post(door, multipart([good, truncated(MR_SMALL)]))

    assert response.status_code == 202
    assert response.headers["Content-Type"] == "application/dicom+json"
    assert [reason for reason, _ in failures(response)] == [0xC000]


def test_every_instance_broken_is_409_and_nothing_is_spooled(door: Door) -> None:
    pixels_cut = encoded(with_pixel_data_cut(pydicom.dcmread(CT_SMALL)))

    response = post(door, multipart([truncated(CT_SMALL), pixels_cut]))

    assert response.status_code == 409
    [(cannot_read, _), (does_not_match, rules)] = failures(response)
    assert (cannot_read, does_not_match) == (0xC000, 0xA900) and rules.startswith("pixel.")
    assert door.spooled() == [] and door.leftovers() == []


def test_dicomweb_client_is_told_409_as_an_error(door: Door) -> None:
    broken = without_patient_id(pydicom.dcmread(CT_SMALL))

    with pytest.raises(requests.HTTPError) as raised:
        door.client().store_instances([broken])

    assert refused(raised).status_code == 409
    assert door.spooled() == []


@pytest.mark.parametrize("token", ["not-the-token", ""])
def test_a_wrong_or_missing_token_is_401_and_stores_nothing(door: Door, token: str) -> None:
    with pytest.raises(requests.HTTPError) as raised:
        door.client(token=token).store_instances([pydicom.dcmread(CT_SMALL)])

    assert refused(raised).status_code == 401
    assert refused(raised).headers["WWW-Authenticate"].startswith("Bearer")
    assert door.spooled() == []


@pytest.mark.parametrize("content_type", [
    "application/dicom", 'multipart/related; type="application/dicom+json"; boundary=b0undary',
    "multipart/form-data; boundary=b0undary"])
def test_another_media_type_is_415(door: Door, content_type: str) -> None:
    response = post(door, multipart([encoded(pydicom.dcmread(CT_SMALL))]),
                    content_type=content_type)

    assert response.status_code == 415
    assert door.spooled() == []


def test_a_part_of_another_media_type_is_415(door: Door) -> None:
    response = post(door, multipart([b'{"00100010": {}}'], part_type="application/json"))

    assert response.status_code == 415
    assert door.leftovers() == []


@pytest.mark.parametrize("body", [b"", b"--b0undary--\r\n", b"no boundary at all",
                                  b"--b0undary\r\n\r\ncut off before its closing boundary"])
def test_a_body_without_a_whole_part_is_400(door: Door, body: bytes) -> None:
    assert post(door, body).status_code == 400
    assert door.leftovers() == []


def test_an_unknown_path_is_404_and_another_method_405(door: Door) -> None:
    assert post(door, b"", path="/instances").status_code == 404
    assert post(door, b"", path="/studies/1.2/series").status_code == 404
    got = requests.get(door.url + "/studies", timeout=30)
    assert (got.status_code, got.headers["Allow"]) == (405, "POST")


def expecting_continue(door: Door, token: str) -> bytes:
    """The first line a client waiting for ``100 Continue`` gets, before it sends a body."""
    port = door.server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(f"POST /studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Content-Type: {DICOM_PARTS}\r\nContent-Length: 1000000\r\n"
                           f"Authorization: Bearer {token}\r\n"
                           "Expect: 100-continue\r\n\r\n".encode())
        return connection.makefile("rb").readline()


def test_a_client_expecting_continue_is_refused_before_its_body(door: Door) -> None:
    assert expecting_continue(door, "wrong").startswith(b"HTTP/1.1 401")
    assert expecting_continue(door, TOKEN).startswith(b"HTTP/1.1 100")


def test_an_instance_of_another_study_than_the_target_is_refused_unspooled(door: Door) -> None:
    ct, mr = pydicom.dcmread(CT_SMALL), pydicom.dcmread(MR_SMALL)
    assert ct.StudyInstanceUID != mr.StudyInstanceUID

    answer = door.client().store_instances([ct, mr], study_instance_uid=ct.StudyInstanceUID)

    [stored] = answer.ReferencedSOPSequence
    [failed] = answer.FailedSOPSequence
    assert stored.ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert failed.ReferencedSOPInstanceUID == mr.SOPInstanceUID
    assert (failed.FailureReason, comment(failed)) == (0xA900, "study.mixed-studies")
    assert [p.name for p in door.spooled()] == [f"{ct.SOPInstanceUID}.dcm"]


def test_a_request_s_study_part_may_close_once_it_is_answered(door: Door) -> None:
    door.client().store_instances([pydicom.dcmread(CT_SMALL)])

    [part] = door.gateway.spool.closable(0, time.time())
    assert part.calling_ae == "CT-ROOM"


def test_fifty_parts_stream_through_one_file_at_a_time(
        door: Door, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sent chunked (the client's chunks are 64 KiB, the body about 2 MiB): each part is on
    disk alone when it is judged, and removed before the next one is read."""
    base = pydicom.dcmread(CT_SMALL)
    datasets = [renamed(pydicom.dcmread(CT_SMALL), f"{base.SOPInstanceUID}.{n}")
                for n in range(50)]
    intake = door.gateway.intake
    take = intake.take
    on_disk_while_judged: list[list[str]] = []

    def watched(received: Path, *args: Any) -> Taken:
        on_disk_while_judged.append(sorted(p.name for p in received.parent.glob("stow-*")))
        return take(received, *args)

    monkeypatch.setattr(intake, "take", watched)

    answer = door.client(chunk_size=64 * 1024).store_instances(datasets)

    assert len(answer.ReferencedSOPSequence) == 50
    assert [len(names) for names in on_disk_while_judged] == [1] * 50
    assert len({names[0] for names in on_disk_while_judged}) == 50
    assert len(door.spooled()) == 50 and door.leftovers() == []


def test_a_body_over_the_cap_is_413_before_it_is_read(tmp_path: Path) -> None:
    small = start_door(tmp_path, max_bytes=100_000)
    try:
        body = multipart([encoded(pydicom.dcmread(CT_SMALL))] * 30)  # about 1.2 MB
        declared = post(small, body)
        with pytest.raises(requests.HTTPError) as chunked:
            small.client(chunk_size=16 * 1024).store_instances([pydicom.dcmread(CT_SMALL)] * 30)
    finally:
        small.server.stop()

    assert declared.status_code == 413
    assert refused(chunked).status_code == 413
    assert small.leftovers() == []


def test_connections_past_the_limit_wait_for_a_free_one(tmp_path: Path) -> None:
    busy = start_door(tmp_path, max_connections=1)
    answers: list[Dataset] = []
    try:
        holding = socket.create_connection(("127.0.0.1", busy.server.server_address[1]))
        waiting = threading.Thread(target=lambda: answers.append(
            busy.client().store_instances([pydicom.dcmread(CT_SMALL)])))
        waiting.start()
        waiting.join(timeout=2)
        served_while_held = list(answers)
        holding.close()
        waiting.join(timeout=30)
    finally:
        busy.server.stop()

    assert served_while_held == []
    assert len(answers) == 1 and len(busy.spooled()) == 1


def test_logs_name_the_label_never_the_token_nor_a_value(
        door: Door, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    dataset = pydicom.dcmread(CT_SMALL)
    dataset.PatientName = "Doe^Jane"
    del dataset.PatientID

    with pytest.raises(requests.HTTPError):
        door.client().store_instances([dataset])
    with pytest.raises(requests.HTTPError):
        door.client(token=TOKEN[:-1]).store_instances([dataset])

    records = [r for r in caplog.records if r.name.startswith("pacs_validator")]
    text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in records)
    assert "CT-ROOM" in text
    assert TOKEN[:-1] not in text and "Doe" not in text
    assert dataset.StudyInstanceUID not in text


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key, and that key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def test_with_the_gateway_s_certificate_stow_rs_is_tls_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bundle in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would outrank the session's
        monkeypatch.delenv(bundle, raising=False)
    certificate, key = self_signed(tmp_path)
    secure = start_door(tmp_path, tls=(certificate, key))
    trusting = requests.Session()
    trusting.verify = str(certificate)
    try:
        answer = secure.client(session=trusting).store_instances([pydicom.dcmread(CT_SMALL)])
        with pytest.raises(requests.ConnectionError):
            requests.post(secure.url.replace("https", "http"), data=b"", timeout=30)
    finally:
        secure.server.stop()

    assert len(answer.ReferencedSOPSequence) == 1 and len(secure.spooled()) == 1


def test_gateway_serve_opens_the_door_its_options_name(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"CT-ROOM {TOKEN}\n", "utf-8")
    command = [str(Path(sys.executable).with_name("pacs-validator")), "gateway", "serve",
               "--spool", str(tmp_path / "spool"), "--port", "0", "--http-port", "0",
               "--stow-token-file", str(tokens), "--stow-max-bytes", "10000000",
               "--api", "https://api.example.org", "--stable-seconds", "3600"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as serving:
        assert serving.stdout is not None
        announced = [serving.stdout.readline(), serving.stdout.readline()]
        port = announced[1].rsplit(":", 1)[1].strip()
        client = DICOMwebClient(f"http://127.0.0.1:{port}",
                                headers={"Authorization": f"Bearer {TOKEN}"})
        answer = client.store_instances([pydicom.dcmread(CT_SMALL)])
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=30) == 0

    assert announced[1].startswith("STOW-RS on 127.0.0.1:")
    assert len(answer.ReferencedSOPSequence) == 1
    assert len(list((tmp_path / "spool" / "instances").rglob("*.dcm"))) == 1


@pytest.mark.parametrize("token_file", [None, "missing", "malformed"])
def test_gateway_serve_without_good_tokens_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], token_file: str | None) -> None:
    (tmp_path / "malformed").write_text(f"{TOKEN}\n", "utf-8")
    argv = ["gateway", "serve", "--spool", str(tmp_path / "spool"), "--http-port", "0",
            "--api", "https://api.example.org"]
    if token_file:
        argv += ["--stow-token-file", str(tmp_path / token_file)]

    assert main(argv) == 2

    complaint = capsys.readouterr().err
    assert complaint.startswith("pacs-validator: ") and TOKEN not in complaint
    assert not (tmp_path / "spool").exists()  # stopped before anything listened
