"""``pacs-validator upload`` and ``status`` over real HTTP against the handlers on moto.

The harness stands in for what AWS (or LocalStack) does around the handlers:
- presigned POSTs go to moto's S3 over HTTP (``ThreadedMotoServer``, sharing the in-process
  moto state the handlers use); the upload URL in ``POST /upload``'s answer is pointed at it,
  as LocalStack points it at itself;
- a one-threaded local HTTP server turns requests into API Gateway proxy events for the api
  handler (one at a time, as Powertools' resolver keeps the current event in a global);
- before it answers any request, the gateway delivers what S3 and EventBridge would have by
  then: an ObjectCreated event to the validator for each new upload, then validation.success
  and chunk events to the descriptor. Pipeline timing is therefore not exercised here.
- moto's S3 checks no POST policy; where a test needs S3 to refuse an expired form, the
  ``expiring_forms`` fixture refuses the forms it is told have expired, as S3 does (403).
"""

from __future__ import annotations

import base64
import calendar
import datetime
import itertools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import botocore.signers
import pydicom
import pytest
from conftest import API_TOKEN, UPLOADS, FakeContext, Stack, api_event, s3_put_event
from corpus_studies import reidentified_study
from moto.server import ThreadedMotoServer
from pydicom.data import get_testdata_file
from test_pipeline import deliver_success_events

from pacs_validator.cli import upload as upload_module
from pacs_validator.cli.main import main
from pacs_validator.cli.upload import STATE_FILE
from pacs_validator.transfer import sending as sending_module
from pacs_validator.transfer.client import HttpResponse, PacsClient, studies_in

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"


@dataclass
class Gateway:
    """The fake API Gateway and S3 event delivery (module docstring)."""

    stack: Stack
    s3_url: str
    delivered: set[str] = field(default_factory=set)
    authorizations: list[str | None] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    """Method and path of each API request, in order."""

    def count(self, method: str, prefix: str) -> int:
        """The API requests of ``method`` on ``prefix`` exactly, or under ``prefix/``."""
        return sum(1 for m, path in self.calls
                   if m == method and (path == prefix or path.startswith(prefix + "/")))

    def pump(self) -> None:
        """Deliver every upload not yet delivered to the validator, then run the descriptor
        until no work is left."""
        for key in self.stack.keys(UPLOADS, "incoming/"):
            if key not in self.delivered:
                self.delivered.add(key)
                self.stack.handler("validator").lambda_handler(
                    s3_put_event(UPLOADS, key, f"{len(self.delivered):016X}"), FakeContext())
        deliver_success_events(self.stack)

    def answer(self, method: str, target: str, body: bytes, headers: dict[str, str]
               ) -> tuple[int, str]:
        self.pump()
        self.authorizations.append(headers.get("Authorization"))
        url = urlsplit(target)
        self.calls.append((method, url.path))
        event = api_event(method, url.path)
        event["body"] = body.decode() if body else None
        event["headers"] = headers
        event["queryStringParameters"] = dict(parse_qsl(url.query)) or None
        if url.path.startswith(("/status/", "/upload/")):
            event["pathParameters"] = {"study_id": url.path.rsplit("/", 1)[-1]}
        response = self.stack.handler("api").lambda_handler(event, FakeContext())
        status, text = int(response["statusCode"]), str(response["body"])
        if method == "POST" and status in (200, 201):  # a declaration, or forms asked for
            declared = json.loads(text)
            for form in declared["uploads"]:
                form["url"] = f"{self.s3_url}/{UPLOADS}"
            text = json.dumps(declared)
        return status, text


def _handler_for(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, text = gateway.answer(self.command, self.path, body, dict(self.headers))
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Api:
    url: str
    gateway: Gateway


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3_server.start()
    host, port = s3_server.get_host_and_port()
    gateway = Gateway(stack, f"http://{host}:{port}")
    server = HTTPServer(("127.0.0.1", 0), _handler_for(gateway))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Api(f"http://127.0.0.1:{server.server_address[1]}", gateway)
    finally:
        server.shutdown()
        server.server_close()
        s3_server.stop()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tests run in an empty folder (where the upload state file goes), with the stack's
    bearer token as a user's ``eval "$(local-runtime/stack env)"`` gives it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PACS_VALIDATOR_API", raising=False)
    monkeypatch.setenv("PACS_VALIDATOR_TOKEN", API_TOKEN)
    return tmp_path


POLICY_EXPIRED = (b"<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: "
                  b"Policy expired.</Message></Error>")


class Clock:
    """A clock ``offset`` seconds ahead of the real one."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.monotonic = time.monotonic
        self.sleep = time.sleep

    def time(self) -> float:
        return time.time() + self.offset


@dataclass
class ExpiringForms:
    """S3's refusal of a presigned POST whose policy has expired, which moto does not make,
    with two clocks that tests move: ``aws``, which the API signs forms by (their policy's
    ``expiration``) and S3 judges them by, and ``command``, the upload command's. A file
    posted with a form whose expiration has passed on ``aws`` is refused with 403. Each post
    is recorded (name, policy, status); ``before_post`` runs before S3 judges it and
    ``after_post`` once it is recorded (to move a clock or interrupt the command)."""

    aws: Clock = field(default_factory=Clock)
    command: Clock = field(default_factory=Clock)
    posts: list[tuple[str, str, int]] = field(default_factory=list)
    before_post: Callable[[ExpiringForms], None] = lambda forms: None
    after_post: Callable[[ExpiringForms], None] = lambda forms: None

    def accepted(self) -> list[tuple[str, str]]:
        return [(name, policy) for name, policy, status in self.posts if status == 204]

    def refused(self) -> list[str]:
        return [name for name, _, status in self.posts if status == 403]


def expiration_of(policy: str) -> float:
    expiration = json.loads(base64.b64decode(policy))["expiration"]
    return calendar.timegm(time.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture
def expiring_forms(monkeypatch: pytest.MonkeyPatch) -> ExpiringForms:
    forms = ExpiringForms()
    monkeypatch.setattr(upload_module, "time", forms.command)
    monkeypatch.setattr(sending_module, "time", forms.command)
    monkeypatch.setattr(botocore.signers, "get_current_datetime", lambda: (
        datetime.datetime.fromtimestamp(forms.aws.time(), datetime.UTC).replace(tzinfo=None)))
    post_file = PacsClient.post_file
    lock = threading.Lock()

    def checked(form: Any, name: str, data: Any, progress: Any = None) -> HttpResponse:
        policy = str(form["fields"]["policy"])
        forms.before_post(forms)
        with lock:
            expired = expiration_of(policy) <= forms.aws.time()
        response = (HttpResponse(403, POLICY_EXPIRED) if expired
                    else post_file(form, name, data, progress))
        with lock:
            forms.posts.append((name, policy, response.status))
            forms.after_post(forms)
        return response

    monkeypatch.setattr(PacsClient, "post_file", staticmethod(checked))
    return forms


def two_study_folder(root: Path) -> Path:
    """A folder of two studies: the largest study of dicomdirtests/98892003 (MR, in its
    series folders) and CT_small.dcm."""
    folder = root / "upload"
    mr = max(studies_in(CORPUS / "dicomdirtests" / "98892003").values(), key=len)
    for path in mr:
        target = folder / "mr" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    shutil.copyfile(CORPUS / "CT_small.dcm", folder / "ct.dcm")
    return folder


def command_output(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed on stdout: the handlers run in this process too, and their
    logs and metrics are one-line JSON objects on the same stdout."""
    return "\n".join(line for line in capsys.readouterr().out.splitlines()
                     if not line.startswith("{"))


def without_patient_id(folder: Path) -> Path:
    """CT_small.dcm with its PatientID removed: a study the rules reject (422)."""
    dataset = pydicom.dcmread(CORPUS / "CT_small.dcm")
    del dataset.PatientID
    dataset.save_as(folder / "no-patient-id.dcm")
    return folder / "no-patient-id.dcm"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(list(argv))
    out = command_output(capsys)
    return code, json.loads(out) if out.strip() else []


def test_multi_study_folder_is_stored_and_exits_0(api: Api, in_tmp: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = two_study_folder(in_tmp)

    code, documents = run_json(capsys, "upload", str(folder), "--api", api.url, "--json")

    assert code == 0
    assert [d["state"] for d in documents] == ["STORED", "STORED"]
    assert sorted(d["counts"]["received"] for d in documents) == [1, 11]
    assert all(f["status"] == 200 for d in documents for f in d["files"])
    assert not (in_tmp / ".pacs-validator-upload.json").exists()


def test_plain_output_shows_progress_and_each_verdict(api: Api, in_tmp: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = two_study_folder(in_tmp)

    assert main(["upload", str(folder), "--api", api.url]) == 0

    out = command_output(capsys)
    assert "study 1/2" in out and "study 2/2" in out
    assert "11/11 files" in out and "1/1 files" in out
    assert "all 2 study(ies): 12/12 files" in out
    assert out.count("STORED ") == 2


def test_interrupted_upload_resumes_with_only_the_missing_files(
        api: Api, in_tmp: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = two_study_folder(in_tmp) / "mr"
    post_file = PacsClient.post_file
    sent: list[str] = []

    def interrupted_after_four(form: Any, name: str, data: Any, progress: Any = None) -> Any:
        if len(sent) >= 4:
            raise KeyboardInterrupt
        sent.append(name)
        return post_file(form, name, data, progress)

    monkeypatch.setattr(PacsClient, "post_file", staticmethod(interrupted_after_four))
    assert main(["upload", str(folder), "--api", api.url, "--jobs", "1"]) == 1
    assert "run the same command again to resume" in capsys.readouterr().err
    assert (in_tmp / ".pacs-validator-upload.json").exists()
    first = list(sent)

    sent.clear()
    monkeypatch.setattr(PacsClient, "post_file", staticmethod(
        lambda form, name, data, progress=None: sent.append(name) or post_file(
            form, name, data, progress)))
    code, [document] = run_json(capsys, "upload", str(folder), "--api", api.url, "--json")

    assert code == 0
    assert document["state"] == "STORED"
    assert len(first) == 4
    assert sorted(first + sent) == sorted(f["name"] for f in document["files"])
    assert len(sent) == 11 - 4
    assert not (in_tmp / ".pacs-validator-upload.json").exists()


def five_study_folder(root: Path) -> Path:
    """Five valid studies of three files each, one folder per study."""
    folder = root / "five"
    for number in range(1, 6):
        study = folder / f"study-{number}"
        study.mkdir(parents=True)
        for name, data in reidentified_study(3, series=1, seed=f"five-{number}"):
            (study / name).write_bytes(data)
    return folder


def test_a_multi_study_upload_interrupted_resumes_without_declaring_any_study_again(
        api: Api, in_tmp: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = five_study_folder(in_tmp)
    declare, post_file = PacsClient.declare, PacsClient.post_file
    declared: list[str] = []

    def counted(client: PacsClient, files: Any, deadline_seconds: Any = None) -> Any:
        answer = declare(client, files, deadline_seconds)
        declared.append(str(answer["study_id"]))
        return answer

    def interrupted_in_the_third_study(form: Any, name: str, data: Any,
                                       progress: Any = None) -> Any:
        if len(declared) == 3:
            raise KeyboardInterrupt
        return post_file(form, name, data, progress)

    monkeypatch.setattr(PacsClient, "declare", counted)
    monkeypatch.setattr(PacsClient, "post_file", staticmethod(interrupted_in_the_third_study))
    assert main(["upload", str(folder), "--api", api.url, "--jobs", "1"]) == 1
    assert "run the same command again to resume" in capsys.readouterr().err
    kept = json.loads((in_tmp / STATE_FILE).read_text())["uploads"]
    assert sorted(entry["study_id"] for entry in kept.values()) == sorted(declared)

    monkeypatch.setattr(PacsClient, "post_file", staticmethod(post_file))
    code, documents = run_json(capsys, "upload", str(folder), "--api", api.url, "--json")

    assert code == 0
    assert [d["state"] for d in documents] == ["STORED"] * 5
    assert len(declared) == 5
    assert sorted(d["study_id"] for d in documents) == sorted(declared)
    assert not (in_tmp / STATE_FILE).exists()


def test_a_study_interrupted_while_waiting_is_waited_for_again_not_sent_again(
        api: Api, in_tmp: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = two_study_folder(in_tmp) / "mr"
    wait, post_file = PacsClient.wait, PacsClient.post_file

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(PacsClient, "wait", interrupted)
    assert main(["upload", str(folder), "--api", api.url]) == 1
    assert "run the same command again to resume" in capsys.readouterr().err
    [entry] = json.loads((in_tmp / STATE_FILE).read_text())["uploads"].values()

    sent: list[str] = []
    monkeypatch.setattr(PacsClient, "wait", wait)
    monkeypatch.setattr(PacsClient, "post_file", staticmethod(
        lambda form, name, data, progress=None: sent.append(name) or post_file(
            form, name, data, progress)))
    assert main(["upload", str(folder), "--api", api.url]) == 0

    out = command_output(capsys)
    assert sent == []
    assert f"STORED     200 {entry['study_id']}" in out
    assert out.rstrip().endswith("1 study: 1 STORED")
    assert not (in_tmp / STATE_FILE).exists()


def test_each_verdict_names_the_study_as_people_know_it_and_totals_end_the_output(
        api: Api, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = two_study_folder(in_tmp)
    rejected = without_patient_id(folder)

    assert main(["upload", str(folder), "--api", api.url]) == 1

    out = command_output(capsys)
    mr = pydicom.dcmread(next(p for p in (folder / "mr").rglob("*") if p.is_file()),
                         stop_before_pixels=True)
    date = f"{mr.StudyDate[:4]}-{mr.StudyDate[4:6]}-{mr.StudyDate[6:]}"
    assert f'study {mr.StudyInstanceUID} in {folder / "mr"}, "{mr.StudyDescription}", {date}' \
        in out
    ct = pydicom.dcmread(rejected, stop_before_pixels=True)
    assert f"study {ct.StudyInstanceUID} in {folder}," in out  # with ct.dcm, whose study it is
    assert out.rstrip().endswith("2 studies: 1 STORED, 1 REJECTED")


def test_rejected_study_prints_its_findings_and_exits_1(
        api: Api, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["upload", str(without_patient_id(in_tmp)), "--api", api.url])

    out = command_output(capsys)
    assert code == 1
    assert "REJECTED   422" in out
    assert "attribute.required" in out


def test_a_study_the_api_refuses_to_declare_is_reported_and_exits_1(
        api: Api, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The harness caps files at 5 MiB; RG3_UNCR.dcm (pydicom-data) is 6.2 MB."""
    large = get_testdata_file("RG3_UNCR.dcm")
    assert large is not None

    code = main(["upload", large, str(CORPUS / "CT_small.dcm"), "--api", api.url])

    out = command_output(capsys)
    assert code == 1
    assert "NOT DONE" in out and "not declared: HTTP 413" in out
    assert "STORED     200" in out  # the other study still goes through


def test_check_refuses_a_study_the_local_rules_reject_and_sends_nothing(
        api: Api, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["upload", str(without_patient_id(in_tmp)), "--api", api.url, "--check"])

    out = command_output(capsys)
    assert code == 1
    assert "REFUSED" in out and "attribute.required" in out
    assert api.gateway.authorizations == []  # the API was never called


def test_token_goes_to_the_api_only_and_status_prints_one_study(
        api: Api, in_tmp: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PACS_VALIDATOR_API", api.url)
    shutil.copyfile(CORPUS / "CT_small.dcm", in_tmp / "ct.dcm")
    posted_headers: list[dict[str, str]] = []
    request = __import__("pacs_validator.transfer.client", fromlist=["request"]).request

    def recording(method: str, url: str, body: Any = None, headers: Any = None,
                  timeout: float = 60) -> Any:
        if url.startswith(api.gateway.s3_url):
            posted_headers.append(dict(headers or {}))
        return request(method, url, body, headers, timeout)

    monkeypatch.setattr("pacs_validator.transfer.client.request", recording)
    code, [document] = run_json(capsys, "upload", str(in_tmp / "ct.dcm"), "--json")

    assert code == 0
    assert set(api.gateway.authorizations) == {f"Bearer {API_TOKEN}"}
    assert posted_headers and all("Authorization" not in h for h in posted_headers)
    assert main(["status", document["study_id"]]) == 0
    assert command_output(capsys).startswith(f"STORED     200 {document['study_id']}")
    assert main(["status", "0" * 32]) == 1  # an unknown study: not a usage error
    assert "hint: no such study" in capsys.readouterr().err


# --- upload forms that expire --------------------------------------------------------------------
def mr_folder(root: Path) -> Path:
    """The 11-file MR study of two_study_folder."""
    return two_study_folder(root) / "mr"


def interrupted_after_four_files(api: Api, folder: Path, expiring_forms: ExpiringForms,
                                 capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run the command on ``folder`` until four files are posted, then Ctrl-C: the upload
    entry it kept (the next run posts freely)."""
    def interrupt_after_four(forms: ExpiringForms) -> None:
        if len(forms.posts) >= 4:
            raise KeyboardInterrupt

    expiring_forms.before_post = interrupt_after_four
    assert main(["upload", str(folder), "--api", api.url, "--jobs", "1"]) == 1
    expiring_forms.before_post = lambda forms: None
    capsys.readouterr()
    [entry] = json.loads((Path.cwd() / STATE_FILE).read_text())["uploads"].values()
    entry_found: dict[str, Any] = entry
    return entry_found


def test_an_interrupted_study_is_resumed_later_with_fresh_forms_in_one_request(
        api: Api, in_tmp: Path, expiring_forms: ExpiringForms,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Interrupted after four files; the command is run again 16 minutes later, when the
    declaration's forms (15 minutes) have expired: it keeps no form, asks for the seven
    files' forms in one request, and resumes the same study."""
    folder = mr_folder(in_tmp)
    entry = interrupted_after_four_files(api, folder, expiring_forms, capsys)
    assert set(entry) == {"study_id", "files", "modified"}  # no form is kept on disk
    state_file = in_tmp / STATE_FILE
    expiring_forms.aws.offset = expiring_forms.command.offset = 16 * 60
    first_run = len(api.gateway.calls)

    code = main(["upload", str(folder), "--api", api.url, "--json"])

    captured = capsys.readouterr()  # with --json, notes and progress go to stderr
    [document] = json.loads("\n".join(line for line in captured.out.splitlines()
                                      if not line.startswith("{")))
    assert code == 0
    assert document["state"] == "STORED"
    assert document["study_id"] == entry["study_id"]
    assert (document["counts"]["declared"], document["counts"]["received"]) == (11, 11)
    posted = [call for call in api.gateway.calls[first_run:] if call[0] == "POST"]
    assert posted == [("POST", f"/upload/{entry['study_id']}")]  # one request, no declaration
    assert expiring_forms.refused() == []
    first, resumed = expiring_forms.accepted()[:4], expiring_forms.accepted()[4:]
    assert len(resumed) == 7 and {name for name, _ in first}.isdisjoint(
        name for name, _ in resumed)
    assert all(expiration_of(policy) > expiring_forms.aws.time() for _, policy in resumed)
    assert "resuming study" in captured.err
    assert not state_file.exists()


def test_forms_expiring_mid_upload_are_replaced_in_one_request_before_the_next_file(
        api: Api, in_tmp: Path, expiring_forms: ExpiringForms,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Once four files are sent, 16 minutes pass: the declaration's forms have expired, and
    the seven left are asked for anew, in one request, before the fifth file is sent."""
    def time_passes_after_four(forms: ExpiringForms) -> None:
        if len(forms.posts) == 4:
            forms.aws.offset = forms.command.offset = 16 * 60

    expiring_forms.after_post = time_passes_after_four
    code, [document] = run_json(capsys, "upload", str(mr_folder(in_tmp)), "--api", api.url,
                                "--json", "--jobs", "1")

    assert code == 0
    assert document["state"] == "STORED"
    assert (document["counts"]["declared"], document["counts"]["received"]) == (11, 11)
    assert api.gateway.count("POST", "/upload") == 2
    assert api.gateway.calls.count(("POST", f"/upload/{document['study_id']}")) == 1
    assert expiring_forms.refused() == []
    expirations = [expiration_of(policy) for _, policy in expiring_forms.accepted()]
    assert len(expirations) == 11 and len(set(expirations[:4])) == 1
    assert all(later >= expirations[0] + 16 * 60 for later in expirations[4:])


def test_forms_that_end_at_the_upload_deadline_are_not_asked_for_again_for_each_file(
        api: Api, in_tmp: Path, expiring_forms: ExpiringForms,
        capsys: pytest.CaptureFixture[str]) -> None:
    """After four files, 14.5 minutes pass (the forms have 30 s left) and the study's upload
    deadline is 30 s away: the API's fresh forms end at the deadline too, and the command,
    seeing that they live no longer than its margin, sends the other seven files with them
    instead of asking again before each."""
    def deadline_near_after_four(forms: ExpiringForms) -> None:
        if len(forms.posts) == 4:
            forms.aws.offset = forms.command.offset = 14.5 * 60
            [study_id] = {policy_study(policy) for _, policy, _ in forms.posts}
            api.gateway.stack.handler("api").table.table.update_item(
                Key={"study_id": study_id, "item": "study"},
                UpdateExpression="SET deadline = :soon",
                ExpressionAttributeValues={":soon": int(time.time()) + 30})

    expiring_forms.after_post = deadline_near_after_four
    code, [document] = run_json(capsys, "upload", str(mr_folder(in_tmp)), "--api", api.url,
                                "--json", "--jobs", "1")

    assert code == 0
    assert document["state"] == "STORED"
    assert api.gateway.calls.count(("POST", f"/upload/{document['study_id']}")) == 1
    assert expiring_forms.refused() == []
    assert len(expiring_forms.accepted()) == 11


def policy_study(policy: str) -> str:
    """The study id of a per-file form's policy (its ``key`` ``incoming/<id>/<name>``)."""
    conditions = json.loads(base64.b64decode(policy))["conditions"]
    [key] = [condition["key"] for condition in conditions
             if isinstance(condition, dict) and "key" in condition]
    return str(key).split("/")[1]


def test_files_s3_refuses_for_expired_forms_are_sent_again_after_one_request(
        api: Api, in_tmp: Path, expiring_forms: ExpiringForms,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The forms expire while 4 threads send their first files, and the command's clock,
    16 minutes behind S3's, does not know it: S3 refuses the 4 files, and they and the
    seven others are sent with forms asked for in one request for all the threads."""
    first_four = threading.Barrier(4)
    arrivals = itertools.count()

    def s3_time_passes_once_four_files_are_in_flight(forms: ExpiringForms) -> None:
        if next(arrivals) < 4:
            first_four.wait(timeout=30)
            forms.aws.offset = 16 * 60

    expiring_forms.before_post = s3_time_passes_once_four_files_are_in_flight
    code, [document] = run_json(capsys, "upload", str(mr_folder(in_tmp)), "--api", api.url,
                                "--json", "--jobs", "4")

    assert code == 0
    assert document["state"] == "STORED"
    assert (document["counts"]["declared"], document["counts"]["received"]) == (11, 11)
    assert len(expiring_forms.refused()) == 4  # S3 refused the first four files ...
    assert api.gateway.count("POST", "/upload") == 2  # ... and forms were asked for once
    accepted = sorted(name for name, _ in expiring_forms.accepted())
    assert accepted == sorted(f["name"] for f in document["files"])
    assert not (in_tmp / ".pacs-validator-upload.json").exists()


def test_a_study_that_can_take_no_more_files_is_declared_anew(
        api: Api, in_tmp: Path, expiring_forms: ExpiringForms,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A kept study past RECEIVING (here INCOMPLETE, as after the upload deadline) is not
    resumed but declared anew, and the new study is stored."""
    folder = mr_folder(in_tmp)
    entry = interrupted_after_four_files(api, folder, expiring_forms, capsys)
    first_run = len(api.gateway.calls)
    api.gateway.stack.handler("api").table.table.update_item(
        Key={"study_id": entry["study_id"], "item": "study"},
        UpdateExpression="SET #state = :state", ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={":state": "INCOMPLETE"})

    code, [document] = run_json(capsys, "upload", str(folder), "--api", api.url, "--json")

    assert code == 0
    assert document["state"] == "STORED" and document["study_id"] != entry["study_id"]
    resumed = api.gateway.calls[first_run:]
    assert resumed.count(("POST", "/upload")) == 1  # declared anew ...
    assert ("POST", f"/upload/{entry['study_id']}") not in resumed  # ... not resumed


def test_an_upload_without_a_token_says_which_variable_to_set(
        api: Api, in_tmp: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PACS_VALIDATOR_TOKEN")

    assert main(["upload", str(two_study_folder(in_tmp) / "ct.dcm"), "--api", api.url]) == 1

    out = command_output(capsys)
    assert "NOT DONE" in out and "HTTP 401" in out
    assert "hint: the API wants a valid bearer token in PACS_VALIDATOR_TOKEN" in out
    assert 'eval "$(local-runtime/stack env)"' in out
    assert out.rstrip().endswith("1 study: 1 NOT DONE")


def test_check_judges_what_cannot_be_read_and_sends_the_rest(
        api: Api, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty file, a FIFO and a folder named like a file among a study's files: each
    is passed over or judged, never a traceback, and the study is still sent."""
    folder = two_study_folder(in_tmp) / "mr"
    (folder / "empty.dcm").write_bytes(b"")
    os.mkfifo(folder / "pipe.dcm")
    (folder / "folder.dcm").mkdir()

    code = main(["upload", str(folder), "--api", api.url, "--check"])

    captured = capsys.readouterr()
    assert code == 0, captured.out
    assert "Traceback" not in captured.err
    assert f"SKIPPED {folder / 'pipe.dcm'}: not a regular file" in captured.err
    assert f"skipped (not DICOM): {folder / 'empty.dcm'}" in captured.err
    assert "1 study: 1 STORED" in captured.out
