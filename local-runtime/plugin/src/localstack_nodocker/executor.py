"""A LocalStack Lambda runtime executor that runs handlers as local processes (no Docker).

A handler process ("worker") is ``python -m awslambdaric <handler>`` in the unzipped code
folder, talking to its own tiny Lambda Runtime API server (``/2018-06-01/runtime/...``) on a
free loopback port.

LocalStack opens one execution environment per concurrent invocation, as AWS does; here they
share a pool of workers per function version: at most ``LAMBDA_LOCAL_MAX_PROCESSES`` (default
4) processes, each taking the next invocation of the pool when it is free. A burst of 50
invocations on 2 cores thus meets a few warm processes instead of 50 cold starts (each an
import of pydicom, boto3 and Powertools: about 2 CPU-seconds), and waits in the pool's queue
for the time those would have taken.

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

from localstack_nodocker.dynamodb_forwarding import endpoint_for_functions

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
DEFAULT_MAX_PROCESSES = 4  # per function version; LAMBDA_LOCAL_MAX_PROCESSES overrides


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


def max_processes() -> int:
    """Handler processes per function version (``LAMBDA_LOCAL_MAX_PROCESSES``, at least 1)."""
    return max(1, int(os.environ.get("LAMBDA_LOCAL_MAX_PROCESSES") or DEFAULT_MAX_PROCESSES))


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
    lines: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    result: bytes | None = None
    is_error: bool = False
    # the worker that took it, and perf_counter() then: the timeout clock starts
    worker: _Worker | None = None
    delivered_at: float | None = None
    deadline_ms: int = 0


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each answer is written in two parts, its head and then its body. With Nagle's algorithm
    # the body waited for the handler's acknowledgement of the head, which the handler delays
    # by up to 40 ms: every invocation was delivered, and every result acknowledged, that late.
    disable_nagle_algorithm = True
    server: _RuntimeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("runtime-api %s: " + format, self.server.worker.name, *args)

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
        invocation = self.server.worker.next_invocation()
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
        worker = self.server.worker
        if path == f"{RUNTIME_API_PREFIX}/init/error":
            worker.init_failed(body)
            self._reply(202, b'{"status":"OK"}')
            return
        prefix = f"{RUNTIME_API_PREFIX}/invocation/"
        if path.startswith(prefix):
            request_id, _, kind = path[len(prefix) :].partition("/")
            if kind in ("response", "error") and worker.complete(
                request_id, body, kind == "error"
            ):
                self._reply(202, b'{"status":"OK"}')
                return
        self._reply(400, b'{"errorMessage":"unknown invocation"}')


class _RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        super().__init__(("127.0.0.1", 0), _RuntimeApiHandler)


class _Worker:
    """One handler process and its Runtime API server; takes invocations from its pool."""

    def __init__(self, pool: _Pool, name: str) -> None:
        self.pool = pool
        self.name = name
        self.server = _RuntimeApiServer(self)
        self._server_thread = threading.Thread(
            target=self.server.serve_forever, name=f"lambda-runtime-api-{name}", daemon=True
        )
        self._server_thread.start()
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.current: _Invocation | None = None
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.init_error: bytes | None = None
        self._spawned_at = 0.0
        self.init_duration_ms: float | None = None
        # output while no invocation runs (init), shown with the next one
        self._log_unclaimed: list[str] = []

    # --- process ---------------------------------------------------------------------------------
    def spawn(self) -> None:
        config_ = self.pool.function_version.config
        command = [
            interpreter_for(str(config_.runtime)), "-m", "awslambdaric", str(config_.handler)
        ]
        env = {
            **self.pool.env,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.server.server_address[1]}",
        }
        with self.pool.lock:
            self.ready.clear()
            self.init_error = None
            self.init_duration_ms = None
            self._spawned_at = time.perf_counter()
            self.process = subprocess.Popen(
                command,
                cwd=env["LAMBDA_TASK_ROOT"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: we can kill it and all its children
            )
            self._reader = threading.Thread(
                target=self._read_output,
                args=(self.process,),
                name=f"lambda-output-{self.name}",
                daemon=True,
            )
            self._reader.start()
        LOG.debug("Started %s (pid %s) as %s", command, self.process.pid, self.name)

    def wait_ready(self) -> bool:
        """Until the handler's first "next" request (True), or its init error, exit or init
        time out (False; the process is killed)."""
        while not self.ready.wait(0.05):
            if self.stopped.is_set():
                raise LambdaRuntimeException("Environment stopped during startup")
            if not self.alive():
                self.kill()
                return False
        return True

    def alive(self) -> bool:
        """Running and initialised, or still within its init time."""
        if self.stopped.is_set() or self.exited() or self.init_error is not None:
            return False
        initialising = time.perf_counter() - self._spawned_at
        return self.ready.is_set() or initialising < self.pool.init_limit_s

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        process = self.process
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
        self.stopped.set()
        self.kill()
        self.server.shutdown()
        self.server.server_close()

    def max_rss_mb(self) -> int:
        process = self.process
        if process is None:
            return 0
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(1, int(line.split()[1]) // 1024)
        except OSError:
            pass
        return 0

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
        with self.pool.lock:
            if self.current is not None:
                self.current.lines.append(line)
            else:
                self._log_unclaimed.append(line)
                del self._log_unclaimed[:-MAX_UNCLAIMED_LINES]
            self.pool.keep_log_line(line)

    def drain_output(self, max_wait: float = 0.25) -> None:
        """Wait until what the handler printed before answering has been read."""
        process = self.process
        if process is None or process.stdout is None or process.stdout.closed:
            return
        give_up = time.monotonic() + max_wait
        try:
            while time.monotonic() < give_up and select.select([process.stdout], [], [], 0)[0]:
                time.sleep(0.002)
        except (ValueError, OSError):  # closed meanwhile
            return
        time.sleep(0.002)  # the reader thread files the last chunk it read

    def release(self, invocation: _Invocation) -> None:
        """The invocation is answered (or given up): the worker takes no more of its output."""
        with self.pool.lock:
            if self.current is invocation:
                self.current = None

    # --- runtime API callbacks -------------------------------------------------------------------
    def next_invocation(self) -> _Invocation | None:
        if not self.ready.is_set():
            with self.pool.lock:
                self.init_duration_ms = (time.perf_counter() - self._spawned_at) * 1000
            self.ready.set()
        while not self.stopped.is_set():
            try:
                invocation = self.pool.pending.get(timeout=0.5)
            except queue.Empty:
                continue
            with self.pool.lock:
                if invocation.done.is_set():  # given up before a worker took it
                    continue
                if self.stopped.is_set():  # scaled down meanwhile: for another worker
                    self.pool.pending.put(invocation)
                    return None
                invocation.lines[:0] = self._log_unclaimed
                self._log_unclaimed = []
                invocation.worker = self
                invocation.delivered_at = time.perf_counter()
                invocation.deadline_ms = int((time.time() + invocation.timeout_s) * 1000)
                self.current = invocation
            return invocation
        return None

    def complete(self, request_id: str, body: bytes, is_error: bool) -> bool:
        invocation = self.current
        if invocation is None or invocation.request_id != request_id or invocation.done.is_set():
            return False
        invocation.result, invocation.is_error = body, is_error
        invocation.done.set()
        return True

    def init_failed(self, body: bytes) -> None:
        self.init_error = body or b'{"errorType":"Runtime.Unknown","errorMessage":"init error"}'


class _Pool:
    """The workers of one function version (one code and configuration revision), shared by
    every LocalStack execution environment of that version: one more worker per environment,
    up to ``max_processes()``."""

    def __init__(self, key: tuple[str, str], function_version: FunctionVersion) -> None:
        self.key = key
        self.function_version = function_version
        self.lock = threading.RLock()
        self.pending: queue.Queue[_Invocation] = queue.Queue()
        self.workers: list[_Worker] = []
        self.environments = 0
        self.env: dict[str, str] = {}
        # a worker that has not asked for an invocation by then is given up (as AWS's init
        # timeout, then the function's own timeout for an init retried at invoke)
        self.init_limit_s = INIT_TIMEOUT_S + float(function_version.config.timeout or 3)
        self._log_all: list[str] = []
        self._log_chars = 0

    @classmethod
    def attach(cls, function_version: FunctionVersion) -> _Pool:
        """The pool of the version, counting one more environment in it."""
        key = (function_version.qualified_arn, function_version.config.internal_revision)
        with _POOLS_LOCK:
            pool = _POOLS.get(key)
            if pool is None:
                pool = _POOLS[key] = cls(key, function_version)
            pool.environments += 1
            return pool

    def detach(self) -> None:
        """One environment fewer: stop the idle workers beyond the environments left, or every
        worker with the last environment."""
        with _POOLS_LOCK:
            self.environments -= 1
            if self.environments <= 0:
                _POOLS.pop(self.key, None)
            with self.lock:
                if self.environments <= 0:
                    extra = list(self.workers)
                else:
                    idle = [w for w in self.workers if w.current is None]
                    extra = idle[: max(0, len(self.workers) - self.environments)]
                for worker in extra:
                    self.workers.remove(worker)
        for worker in extra:
            worker.stop()

    def grow(self, env_vars: dict[str, str]) -> None:
        """A new worker when the environments outnumber the workers (and the cap allows), ready
        when this returns; raises what a failed init answers."""
        config_ = self.function_version.config
        with self.lock:
            if len(self.workers) >= min(self.environments, max_processes()):
                return
            if not self.env:
                code_dir = str(config_.code.get_unzipped_code_location()) if config_.code else ""
                env = {key: os.environ[key] for key in PASSTHROUGH_ENV if key in os.environ}
                env.update(endpoint_for_functions())
                env.update({key: str(value) for key, value in env_vars.items()})
                env.update(
                    {
                        "LAMBDA_TASK_ROOT": code_dir,
                        "PYTHONPATH": os.pathsep.join(
                            [code_dir, *layer_paths(self.function_version)]
                        ),
                        "PATH": os.pathsep.join([*layer_bin_paths(self.function_version),
                                                 env.get("PATH", os.defpath)]),
                        "PYTHONUNBUFFERED": "1",
                        "PYTHONDONTWRITEBYTECODE": "1",
                    }
                )
                env.pop("LAMBDA_RUNTIME_DIR", None)
                self.env = env
            worker = _Worker(self, f"{config_.handler}-{len(self.workers)}-{uuid.uuid4().hex[:8]}")
            self.workers.append(worker)
        worker.spawn()
        if worker.wait_ready():
            return
        worker.drain_output()
        code = worker.process.poll() if worker.process else None
        payload = worker.init_error or json.dumps(
            {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"Runtime exited with error: exit status {code}",
            }
        ).encode()
        LOG.warning(
            "Lambda %s failed to initialise:\n%s", self.function_version.qualified_arn,
            self.logs(),
        )
        with self.lock:
            self.workers.remove(worker)
        worker.stop()
        raise StatusErrorException("Environment startup failed", payload=payload)

    def keep_log_line(self, line: str) -> None:
        """Under self.lock: the last MAX_KEPT_LOG_CHARS of output, for get_logs()."""
        self._log_all.append(line)
        self._log_chars += len(line) + 1
        while self._log_chars > MAX_KEPT_LOG_CHARS and len(self._log_all) > 1:
            self._log_chars -= len(self._log_all.pop(0)) + 1

    def logs(self) -> str:
        with self.lock:
            return "\n".join(self._log_all)

    def stranded(self) -> bytes | None:
        """None while a worker is alive; else what to answer an invocation no worker can take
        (an init error, or an exit), and every worker is started again for the next one."""
        with self.lock:  # one waiting invocation restarts them, the others see them alive
            workers = [w for w in self.workers if not w.stopped.is_set()]
            if any(w.alive() for w in workers):
                return None
            answer = next((w.init_error for w in workers if w.init_error is not None), None)
            for worker in workers:
                worker.kill()
                worker.spawn()
        return answer or json.dumps(
            {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited"}
        ).encode()


# (function version ARN, internal revision) -> its pool, while environments use it
_POOLS: dict[tuple[str, str], _Pool] = {}
_POOLS_LOCK = threading.Lock()


class LocalRuntimeExecutor(RuntimeExecutor):
    """Runs a Zip-packaged Python function as local awslambdaric processes (a shared pool)."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._pool: _Pool | None = None
        self._logs_from: _Pool | None = None  # kept after a failed start, for its logs

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
        pool = self._logs_from = _Pool.attach(self.function_version)
        try:
            pool.grow(env_vars)
        except BaseException:
            pool.detach()
            raise
        self._pool = pool

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.detach()

    # --- invoke ----------------------------------------------------------------------------------
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        pool = self._pool
        if pool is None:
            raise LambdaRuntimeException("Environment not started")
        request_id = payload.get("invoke-id") or str(uuid.uuid4())
        timeout_s = float(self.function_version.config.timeout or 3)
        start_line = f"START RequestId: {request_id} Version: {self.function_version.id.qualifier}"
        invocation = _Invocation(request_id, payload, timeout_s, [start_line])
        pool.pending.put(invocation)

        status = "success"
        stranded: bytes | None = None
        while not invocation.done.wait(0.05):
            # like AWS, the function timeout runs from delivery: waiting for a free worker
            # stands for the start of an environment AWS would have opened meanwhile
            worker = invocation.worker
            if worker is None:
                stranded = pool.stranded()
                if stranded is not None:
                    status = "init_error"
                    break
                continue
            if time.perf_counter() - (invocation.delivered_at or 0.0) >= timeout_s:
                status = "timeout"
                break
            if worker.init_error is not None:  # a respawned process failed to initialise
                status = "init_error"
                break
            if worker.stopped.is_set() or worker.exited():
                status = "exited"
                break
        invocation.done.set()
        worker = invocation.worker
        if worker is not None and status == "success":
            worker.drain_output()
        delivered_at = invocation.delivered_at
        duration_ms = (time.perf_counter() - delivered_at) * 1000 if delivered_at else 0.0
        if worker is not None:
            worker.release(invocation)
        lines = invocation.lines
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
            result, is_error = (worker.init_error if worker else stranded) or b"", True
        elif status == "exited":
            code = worker.process.poll() if worker and worker.process else None
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

        lines.append(f"END RequestId: {request_id}")
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {max(1, int(duration_ms + 0.999))} ms\t"
            f"Memory Size: {self.function_version.config.memory_size} MB\t"
            f"Max Memory Used: {worker.max_rss_mb() if worker else 0} MB"
        )
        if worker is not None and worker.init_duration_ms is not None:
            report += f"\tInit Duration: {worker.init_duration_ms:.2f} ms"
            worker.init_duration_ms = None  # reported once, with the worker's first invocation
        if status != "success":
            report += f"\tStatus: {status}"
        lines.append(report)

        if status != "success" and worker is not None and not worker.stopped.is_set():
            # like AWS: the sandbox is reset; the next invocation meets a fresh process (cold start)
            worker.kill()
            worker.spawn()
        return InvocationResult(
            request_id=request_id, payload=result, is_error=is_error, logs="\n".join(lines) + "\n"
        )

    # --- addresses and logs ----------------------------------------------------------------------
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        return self._logs_from.logs() if self._logs_from else ""

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
