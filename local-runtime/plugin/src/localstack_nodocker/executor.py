"""A LocalStack Lambda runtime executor that runs handlers as local processes (no Docker).

Each execution environment gets:
- a tiny Lambda Runtime API server (``/2018-06-01/runtime/...``) on a free loopback port, and
- one ``python -m awslambdaric <handler>`` process in the unzipped code folder, talking to it.

The interpreter per runtime comes from ``LAMBDA_LOCAL_INTERPRETERS`` (JSON object, e.g.
``{"python3.12": "<path of a python3.12>"}``), else ``python3.12`` etc. on PATH. Each
interpreter needs ``awslambdaric`` and ``boto3`` installed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import (
    FunctionVersion,
    InvocationResult,
)
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

LOG = logging.getLogger(__name__)

RUNTIME_API_PREFIX = "/2018-06-01/runtime"
# environment of LocalStack itself that a handler process inherits (everything else comes from
# Lambda)
PASSTHROUGH_ENV = (
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
)
MAX_KEPT_LOG_CHARS = 200_000  # for get_logs()
INIT_TIMEOUT_S = 10.0  # AWS's limit for the init phase of on-demand functions
MAX_UNCLAIMED_LINES = 1_000  # output between invocations, shown with the next one


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def interpreter_for(runtime: str) -> str:
    """The Python interpreter that runs handlers of ``runtime`` (e.g. ``python3.12``)."""
    mapping: dict[str, str] = json.loads(os.environ.get("LAMBDA_LOCAL_INTERPRETERS") or "{}")
    if runtime in mapping:
        return mapping[runtime]
    found = shutil.which(runtime)
    if found:
        return found
    raise LambdaRuntimeException(
        f"No interpreter for runtime {runtime!r}: "
        f"set LAMBDA_LOCAL_INTERPRETERS or put {runtime} on PATH"
    )


def layer_paths(function_version: FunctionVersion) -> list[str]:
    """PYTHONPATH entries for the function's layers, as AWS merges them under /opt/python.

    Later layers overwrite earlier ones on AWS, so they come first here; every layer's
    ``python/lib/<runtime>/site-packages`` precedes every ``python/`` as /opt's sys.path order does.
    """
    runtime = function_version.config.runtime or ""
    site_packages: list[str] = []
    plain: list[str] = []
    for layer in reversed(function_version.config.layers or []):
        if layer.code is None:
            continue
        root = Path(layer.code.get_unzipped_code_location())
        site_packages.append(str(root / "python" / "lib" / runtime / "site-packages"))
        plain.append(str(root / "python"))
    return site_packages + plain


def layer_bin_paths(function_version: FunctionVersion) -> list[str]:
    """PATH entries for the function's layers' ``bin/``, as AWS puts /opt/bin on PATH (later
    layers first, as for :func:`layer_paths`)."""
    return [str(Path(layer.code.get_unzipped_code_location()) / "bin")
            for layer in reversed(function_version.config.layers or [])
            if layer.code is not None]


@dataclass
class _Invocation:
    request_id: str
    payload: dict[str, str]
    timeout_s: float
    done: threading.Event = field(default_factory=threading.Event)
    result: bytes | None = None
    is_error: bool = False
    # perf_counter() when the handler received it: the timeout clock starts
    delivered_at: float | None = None
    deadline_ms: int = 0


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RuntimeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("runtime-api %s: " + format, self.server.executor.id, *args)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path != f"{RUNTIME_API_PREFIX}/invocation/next":
            self._reply(404, b'{"errorMessage":"not found"}')
            return
        invocation = self.server.executor._next_invocation()
        if invocation is None:  # shutting down
            self._reply(410, b'{"errorMessage":"environment stopped"}')
            return
        payload = invocation.payload
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": payload.get("invoked-function-arn", ""),
            "Lambda-Runtime-Trace-Id": payload.get("trace-id", ""),
        }
        self._reply(200, (payload.get("payload") or "").encode(), headers)

    def do_POST(self) -> None:
        body = self._body()
        path = self.path
        executor = self.server.executor
        if path == f"{RUNTIME_API_PREFIX}/init/error":
            executor._init_failed(body)
            self._reply(202, b'{"status":"OK"}')
            return
        prefix = f"{RUNTIME_API_PREFIX}/invocation/"
        if path.startswith(prefix):
            request_id, _, kind = path[len(prefix) :].partition("/")
            if kind in ("response", "error") and executor._complete(
                request_id, body, kind == "error"
            ):
                self._reply(202, b'{"status":"OK"}')
                return
        self._reply(400, b'{"errorMessage":"unknown invocation"}')


class _RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, executor: LocalRuntimeExecutor) -> None:
        self.executor = executor
        super().__init__(("127.0.0.1", 0), _RuntimeApiHandler)


class LocalRuntimeExecutor(RuntimeExecutor):
    """Runs a Zip-packaged Python function as a local awslambdaric process."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._server: _RuntimeApiServer | None = None
        self._server_thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._env: dict[str, str] = {}
        self._lock = threading.RLock()
        self._pending: queue.Queue[_Invocation] = queue.Queue()
        self._current: _Invocation | None = None
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._init_error: bytes | None = None
        self._spawned_at = 0.0
        self._init_duration_ms: float | None = None
        self._init_reported = False
        self._log_all: list[str] = []
        self._log_chars = 0
        # output while no invocation runs (init), shown with the next one
        self._log_unclaimed: list[str] = []
        self._log_invocation: list[str] | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, env_vars: dict[str, str]) -> None:
        config_ = self.function_version.config
        if (
            config_.package_type != PackageType.Zip
            or not config_.runtime
            or not config_.code
            or not config_.handler
        ):
            raise LambdaRuntimeException("The local executor runs Zip-packaged functions only")
        if not config_.runtime.startswith("python"):
            raise LambdaRuntimeException(
                f"The local executor runs Python runtimes only, not {config_.runtime}"
            )
        self._server = _RuntimeApiServer(self)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, name=f"lambda-runtime-api-{self.id}", daemon=True
        )
        self._server_thread.start()
        code_dir = str(config_.code.get_unzipped_code_location())
        env = {key: os.environ[key] for key in PASSTHROUGH_ENV if key in os.environ}
        env.update({key: str(value) for key, value in env_vars.items()})
        port = self._server.server_address[1]
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
                "LAMBDA_TASK_ROOT": code_dir,
                "PYTHONPATH": os.pathsep.join([code_dir, *layer_paths(self.function_version)]),
                "PATH": os.pathsep.join([*layer_bin_paths(self.function_version),
                                         env.get("PATH", os.defpath)]),
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        env.pop("LAMBDA_RUNTIME_DIR", None)
        self._env = env
        self._spawn()
        # ready = the handler's first "next" request; or its init error; or its exit; or stop()
        while not self._ready.wait(0.05):
            if self._stopped.is_set():
                raise LambdaRuntimeException("Environment stopped during startup")
            if self._init_error is not None or (self._process and self._process.poll() is not None):
                break
        if self._init_error is not None or not self._ready.is_set():
            self._drain_output()
            code = self._process.poll() if self._process else None
            payload = self._init_error or json.dumps(
                {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"Runtime exited with error: exit status {code}",
                }
            ).encode()
            LOG.warning(
                "Lambda %s failed to initialise:\n%s",
                self.function_version.qualified_arn,
                self.get_logs(),
            )
            raise StatusErrorException("Environment startup failed", payload=payload)

    def _spawn(self) -> None:
        config_ = self.function_version.config
        command = [
            interpreter_for(str(config_.runtime)), "-m", "awslambdaric", str(config_.handler)
        ]
        with self._lock:
            self._ready.clear()
            self._init_error = None
            self._init_duration_ms = None
            self._init_reported = False
            self._spawned_at = time.perf_counter()
            self._process = subprocess.Popen(
                command,
                cwd=self._env["LAMBDA_TASK_ROOT"],
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: we can kill it and all its children
            )
            self._reader = threading.Thread(
                target=self._read_output,
                args=(self._process,),
                name=f"lambda-output-{self.id}",
                daemon=True,
            )
            self._reader.start()
        LOG.debug(
            "Started %s (pid %s) for %s",
            command,
            self._process.pid,
            self.function_version.qualified_arn,
        )

    def _kill_process(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=2)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        if self._reader:
            self._reader.join(timeout=1)

    def stop(self) -> None:
        self._stopped.set()
        self._kill_process()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- output ----------------------------------------------------------------------------------
    def _read_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        partial = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                if partial:
                    self._add_log_line(partial.decode(errors="replace"))
                process.stdout.close()
                return
            partial += chunk
            *lines, partial = partial.split(b"\n")
            for line in lines:
                self._add_log_line(line.decode(errors="replace"))

    def _add_log_line(self, line: str) -> None:
        with self._lock:
            if self._log_invocation is not None:
                self._log_invocation.append(line)
            else:
                self._log_unclaimed.append(line)
                del self._log_unclaimed[:-MAX_UNCLAIMED_LINES]
            self._log_all.append(line)
            self._log_chars += len(line) + 1
            while self._log_chars > MAX_KEPT_LOG_CHARS and len(self._log_all) > 1:
                self._log_chars -= len(self._log_all.pop(0)) + 1

    def _drain_output(self, max_wait: float = 0.25) -> None:
        """Wait until what the handler printed before answering has been read."""
        process = self._process
        if process is None or process.stdout is None or process.stdout.closed:
            return
        give_up = time.monotonic() + max_wait
        try:
            while time.monotonic() < give_up and select.select([process.stdout], [], [], 0)[0]:
                time.sleep(0.002)
        except (ValueError, OSError):  # closed meanwhile
            return
        time.sleep(0.002)

    # --- runtime API callbacks -------------------------------------------------------------------
    def _next_invocation(self) -> _Invocation | None:
        if not self._ready.is_set():
            with self._lock:
                self._init_duration_ms = (time.perf_counter() - self._spawned_at) * 1000
            self._ready.set()
        while not self._stopped.is_set():
            try:
                invocation = self._pending.get(timeout=0.5)
            except queue.Empty:
                continue
            if invocation.done.is_set():  # timed out before the handler asked for it
                continue
            invocation.delivered_at = time.perf_counter()
            invocation.deadline_ms = int((time.time() + invocation.timeout_s) * 1000)
            return invocation
        return None

    def _complete(self, request_id: str, body: bytes, is_error: bool) -> bool:
        invocation = self._current
        if invocation is None or invocation.request_id != request_id or invocation.done.is_set():
            return False
        invocation.result, invocation.is_error = body, is_error
        invocation.done.set()
        return True

    def _init_failed(self, body: bytes) -> None:
        self._init_error = body or b'{"errorType":"Runtime.Unknown","errorMessage":"init error"}'

    # --- invoke ----------------------------------------------------------------------------------
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload.get("invoke-id") or str(uuid.uuid4())
        timeout_s = float(self.function_version.config.timeout or 3)
        started = time.perf_counter()
        invocation = _Invocation(request_id, payload, timeout_s)
        with self._lock:
            lines: list[str] = self._log_unclaimed
            self._log_unclaimed = []
            lines.append(
                f"START RequestId: {request_id} Version: {self.function_version.id.qualifier}"
            )
            self._log_invocation = lines
            self._current = invocation
        self._pending.put(invocation)

        status = "success"
        while not invocation.done.wait(0.05):
            # like AWS, the function timeout runs from delivery; a (re)starting process gets
            # INIT_TIMEOUT_S first
            delivered_at = invocation.delivered_at
            if (
                delivered_at is None
                and time.perf_counter() - started >= INIT_TIMEOUT_S + timeout_s
            ) or (delivered_at is not None and time.perf_counter() - delivered_at >= timeout_s):
                status = "timeout"
                break
            process = self._process
            if self._init_error is not None:  # a respawned process failed to initialise
                status = "init_error"
                break
            if self._stopped.is_set() or (process is not None and process.poll() is not None):
                status = "exited"
                break
        if status == "success":
            self._drain_output()
        duration_ms = (time.perf_counter() - (invocation.delivered_at or started)) * 1000
        max_rss_mb = self._max_rss_mb()

        with self._lock:
            self._log_invocation = None
            self._current = None
        if status == "timeout":
            lines.append(f"{_now_iso()} {request_id} Task timed out after {timeout_s:.2f} seconds")
            result = json.dumps(
                {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": (
                        f"RequestId: {request_id} Error: "
                        f"Task timed out after {timeout_s:.2f} seconds"
                    ),
                }
            ).encode()
            is_error = True
        elif status == "init_error":
            result, is_error = self._init_error or b"", True
        elif status == "exited":
            code = self._process.poll() if self._process else None
            message = (
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"
            )
            lines.append(message)
            result = json.dumps(
                {"errorType": "Runtime.ExitError", "errorMessage": message}
            ).encode()
            is_error = True
        else:
            result, is_error = invocation.result or b"", invocation.is_error
        invocation.done.set()

        lines.append(f"END RequestId: {request_id}")
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {max(1, int(duration_ms + 0.999))} ms\t"
            f"Memory Size: {self.function_version.config.memory_size} MB\t"
            f"Max Memory Used: {max_rss_mb} MB"
        )
        if self._init_duration_ms is not None and not self._init_reported:
            report += f"\tInit Duration: {self._init_duration_ms:.2f} ms"
            self._init_reported = True
        if status != "success":
            report += f"\tStatus: {status}"
        lines.append(report)

        if status != "success" and not self._stopped.is_set():
            # like AWS: the sandbox is reset; the next invocation meets a fresh process (cold start)
            self._kill_process()
            self._spawn()
        return InvocationResult(
            request_id=request_id, payload=result, is_error=is_error, logs="\n".join(lines) + "\n"
        )

    def _max_rss_mb(self) -> int:
        process = self._process
        if process is None:
            return 0
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(1, int(line.split()[1]) // 1024)
        except OSError:
            pass
        return 0

    # --- addresses and logs ----------------------------------------------------------------------
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        with self._lock:
            return "\n".join(self._log_all)

    # --- versions --------------------------------------------------------------------------------
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()
        for layer in function_version.config.layers or []:
            if layer.code is not None:
                layer.code.prepare_for_execution()
        if function_version.config.runtime:
            interpreter_for(function_version.config.runtime)  # fail early with a clear message

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to do: LocalStack deletes the unzipped code itself."""

    @classmethod
    def validate_environment(cls) -> bool:
        return True
