"""The HTTP client and upload progress: retries, the bearer token, file names, progress views."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from pacs_validator.cli.main import main
from pacs_validator.cli.upload import progress_view
from pacs_validator.contract.names import safe_name
from pacs_validator.transfer import client as client_module
from pacs_validator.transfer.client import HttpResponse, PacsClient, upload_names


class Script:
    """Answers ``request`` calls from a list: an HttpResponse, or an exception to raise."""

    def __init__(self, answers: list[HttpResponse | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[Any] = []
        """The JSON of each API request's body (None for none, or for a file's)."""

    def __call__(self, method: str, url: str, body: Any = None,
                 headers: dict[str, str] | None = None, timeout: float = 60) -> HttpResponse:
        self.calls.append((method, url, dict(headers or {})))
        json_sent = isinstance(body, bytes) and (headers or {}).get(
            "Content-Type") == "application/json"
        self.bodies.append(json.loads(body) if json_sent else None)
        if not isinstance(body, (bytes, type(None))):
            b"".join(body)  # a streamed body is read, as the connection would
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(*answers: HttpResponse | Exception) -> Script:
        fake = Script(list(answers))
        monkeypatch.setattr(client_module, "request", fake)
        return fake
    return install


FORM = {"url": "http://s3.test/bucket", "fields": {"policy": "p"}, "key_prefix": "incoming/x/"}


def test_transient_failures_are_retried_until_one_succeeds(script: Any) -> None:
    fake = script(HttpResponse(503, b""), ConnectionResetError(), HttpResponse(204, b""))

    PacsClient("https://api.test", backoff=0).send_file(FORM, "a.dcm", b"DICM")

    assert len(fake.calls) == 3


def test_a_refusal_is_not_retried(script: Any) -> None:
    fake = script(HttpResponse(403, b"denied"))

    with pytest.raises(client_module.ApiError):
        PacsClient("https://api.test", backoff=0).send_file(FORM, "a.dcm", b"DICM")
    assert len(fake.calls) == 1


def test_after_the_last_retry_the_failure_stands(script: Any) -> None:
    script(*[ConnectionRefusedError()] * 3)

    with pytest.raises(ConnectionRefusedError):
        PacsClient("https://api.test", retries=2, backoff=0).send_file(FORM, "a.dcm", b"DICM")


def test_progress_of_a_failed_attempt_is_taken_back(script: Any, tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(b"x" * 5000)
    script(HttpResponse(500, b""), HttpResponse(204, b""))
    reported: list[int] = []

    PacsClient("https://api.test", backoff=0).send_file(FORM, "a.dcm", path, reported.append)

    assert sum(reported) == 5000
    assert -5000 in reported


def test_progress_of_a_refused_file_is_taken_back(script: Any, tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(b"x" * 5000)
    script(HttpResponse(403, b"Policy expired"))
    reported: list[int] = []

    with pytest.raises(client_module.ApiError):
        PacsClient("https://api.test", backoff=0).send_file(FORM, "a.dcm", path, reported.append)

    assert sum(reported) == 0 and 5000 in reported


def test_forms_are_asked_for_by_name_and_refusals_raise(script: Any) -> None:
    fake = script(HttpResponse(200, b'{"study_id": "s", "uploads": [{"name": "a.dcm"}], '
                                    b'"expires_in": 900}'),
                  HttpResponse(409, b'{"message": "the study is STORED"}'))
    api = PacsClient("https://api.test", token="t0k3n")

    assert api.forms("s", ["a.dcm"])["uploads"] == [{"name": "a.dcm"}]
    with pytest.raises(client_module.ApiError) as refused:
        api.forms("s", ["a.dcm"])

    assert refused.value.status == 409 and "STORED" in refused.value.body
    assert [(method, url) for method, url, _ in fake.calls] == [
        ("POST", "https://api.test/upload/s")] * 2
    assert fake.bodies == [{"names": ["a.dcm"]}] * 2
    assert fake.calls[0][2]["Authorization"] == "Bearer t0k3n"


def forms_answer(names: list[str]) -> HttpResponse:
    uploads = [{"name": name, "url": "u", "fields": {}} for name in names]
    return HttpResponse(200, json.dumps({"uploads": uploads, "expires_in": 900}).encode())


def test_the_forms_past_the_declarations_are_asked_for_100_at_a_time(script: Any) -> None:
    names = [f"IM{n:04d}.dcm" for n in range(250)]
    fake = script(forms_answer(names[20:120]), forms_answer(names[120:220]),
                  forms_answer(names[220:]))
    declared = {"study_id": "s", "uploads": [{"name": name} for name in names[:20]]}

    forms = PacsClient("https://api.test").all_forms(declared, names)

    assert list(forms) == names
    assert [body["names"] for body in fake.bodies] == [
        names[20:120], names[120:220], names[220:]]


def test_the_token_goes_to_the_api_and_never_to_s3(script: Any) -> None:
    fake = script(HttpResponse(201, b'{"study_id": "s", "upload": {}}'), HttpResponse(204, b""))
    api = PacsClient("https://api.test", token="t0k3n")

    api.declare({"a.dcm": 4})
    api.send_file(FORM, "a.dcm", b"DICM")

    (_, _, api_headers), (_, _, s3_headers) = fake.calls
    assert api_headers["Authorization"] == "Bearer t0k3n"
    assert "Authorization" not in s3_headers


def test_a_declaration_with_a_client_token_sends_it_and_takes_the_study_named_again(
        script: Any) -> None:
    named_again = b'{"study_id": "s", "uploads": []}'
    fake = script(HttpResponse(503, b""), HttpResponse(200, named_again),
                  HttpResponse(409, b'{"rule": "upload.token-reused"}'),
                  HttpResponse(201, named_again))
    api = PacsClient("https://api.test", backoff=0)

    assert api.declare({"a.dcm": 4}, client_token="gw-1.0042")["study_id"] == "s"
    with pytest.raises(client_module.ApiError) as refused:
        api.declare({"a.dcm": 5}, client_token="gw-1.0042")
    api.declare({"a.dcm": 4})

    assert refused.value.status == 409
    assert [body.get("client_token") for body in fake.bodies] == ["gw-1.0042"] * 3 + [None]


class Recorder(BaseHTTPRequestHandler):
    """Records each request's Authorization header; answers 302 to ``location`` when the
    server has one, else 200 with an empty study status."""

    def _serve(self) -> None:
        server: Any = self.server
        server.seen.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if server.location:
            self.send_response(302)
            self.send_header("Location", server.location + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"state": "STORED", "next": null, "files": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[Any, Any]]:
    """Two local HTTP servers: the first redirects every request to the second."""
    started = []
    for _ in range(2):
        server: Any = HTTPServer(("127.0.0.1", 0), Recorder)
        server.seen, server.location = [], None
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    api, elsewhere = started
    api.location = f"http://localhost:{elsewhere.server_address[1]}"
    yield api, elsewhere
    for server in started:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_not_followed_and_the_token_stays_with_the_api(
        servers: tuple[Any, Any]) -> None:
    api, elsewhere = servers
    client = PacsClient(f"http://127.0.0.1:{api.server_address[1]}", token="t0k3n", backoff=0)

    refusals = []
    for call in (lambda: client.full_status("s"), lambda: client.declare({"a.dcm": 4})):
        try:
            call()
        except client_module.ApiError as refused:
            refusals.append(refused.status)

    assert elsewhere.seen == []
    assert api.seen == ["Bearer t0k3n"] * 2
    assert refusals == [302, 302]


@pytest.mark.parametrize("url", ["http://api.example", "http://127.0.0.1.example",
                                 "ftp://localhost/api", "file:///etc", "https://"])
def test_the_token_is_never_sent_in_clear_to_another_machine(url: str) -> None:
    with pytest.raises(ValueError, match="API URL"):
        PacsClient(url, token="t0k3n")


@pytest.mark.parametrize("url", ["https://api.example/Prod/", "http://localhost:4566/x",
                                 "http://127.0.0.9:4566", "http://[::1]:4566"])
def test_https_and_this_machine_are_api_urls(url: str) -> None:
    assert PacsClient(url).api_base == url.rstrip("/")


def test_the_status_command_refuses_a_plain_http_api_as_usage(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "s", "--api", "http://api.example"]) == 2
    assert "must be https" in capsys.readouterr().err


def test_upload_names_are_unique_and_what_the_api_will_call_them(tmp_path: Path) -> None:
    paths = [tmp_path / "a" / "IM 1", tmp_path / "b" / "IM 1", tmp_path / "IM 1",
             tmp_path / "é.dcm"]

    names = upload_names(paths)

    assert sorted(names.values()) == sorted(paths)
    assert all(safe_name(name) == name for name in names)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "expected"), [
    (Terminal(), "11/11 files"),  # rich's bars, final frame
    (io.StringIO(), "study 1/1 mr: 11/11 files, 1.5 MB of 1.5 MB"),  # plain lines
])
def test_progress_counts_files_and_bytes_from_parallel_senders(stream: io.StringIO,
                                                               expected: str) -> None:
    with progress_view(stream) as view:
        task = view.add("study 1/1 mr", 11, 1_500_000)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: (view.advance(task, sent=136_364), view.advance(task, files=1)),
                          range(11)))

    assert expected in stream.getvalue()
