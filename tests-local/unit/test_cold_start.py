"""What a handler's import leaves for later: no X-Ray SDK while tracing is off, no AWS client
before its first use, no preview stack in the validator, nothing of pydicom (nor the numpy
and Pillow it loads when it can) in the API and the descriptor; and what a SnapStart restore
refreshes. (benchmarks/bench_cold_start.py measures the
imports from the built layers.)"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Tracer

from pacs_validator.aws.clients import Clients
from pacs_validator.aws.runtime import snapstart
from pacs_validator.aws.runtime.tracing import Untraced

ROOT = Path(__file__).resolve().parents[2]
LAMBDA = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
          "AWS_SECRET_ACCESS_KEY": "testing", "LAMBDA_TASK_ROOT": "/var/task",
          "IDEMPOTENCY_TABLE": "idempotency", "POWERTOOLS_SERVICE_NAME": "test"}
"""A Lambda environment: in it, Powertools traces unless told not to."""
WATCHED = ["aws_xray_sdk.core", "pydicom", "pacs_validator.dicom.previews", "numpy", "PIL"]


def imported(code: str, cwd: Path, **environment: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter of this venv; the JSON it prints."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), **LAMBDA, **environment})
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answer


@cache
def handler_import(function: str) -> dict[str, Any]:
    """What importing ``functions/<function>/app.py`` loaded, tracing off as configured (one
    fresh interpreter per function, whichever tests ask)."""
    return imported(
        "import gc, json, sys; sys.path.insert(0, '.'); import app, boto3; print(json.dumps("
        f"{{'loaded': [m for m in {WATCHED!r} if m in sys.modules],"
        " 'session': boto3.DEFAULT_SESSION is not None,"
        " 'collecting': gc.isenabled(), 'frozen': gc.get_freeze_count()}))",
        ROOT / "functions" / function, POWERTOOLS_TRACE_DISABLED="true")


@pytest.mark.parametrize("function", ["api", "validator", "descriptor"])
def test_importing_a_handler_makes_no_client_and_loads_no_x_ray_nor_previews(
        function: str) -> None:
    loaded = handler_import(function)
    assert loaded["session"] is False  # boto3's default session: made with the first client
    assert "aws_xray_sdk.core" not in loaded["loaded"]
    assert "pacs_validator.dicom.previews" not in loaded["loaded"]


@pytest.mark.parametrize("function", ["api", "validator", "descriptor"])
def test_a_handler_imports_without_collecting_and_leaves_the_collector_on(function: str) -> None:
    loaded = handler_import(function)
    assert loaded["collecting"] is True
    assert loaded["frozen"] > 50_000  # what boto3, Powertools and the package made (a bare
    # interpreter tracks about 5,000 objects)


@pytest.mark.parametrize("function", ["api", "descriptor"])
def test_the_api_and_the_descriptor_load_nothing_of_pydicom_numpy_nor_pillow(
        function: str) -> None:
    """numpy and Pillow are importable here, as in the descriptor's layers: importing pydicom
    would load them. The descriptor imports all three when a chunk has a preview."""
    assert handler_import(function)["loaded"] == []


def test_with_tracing_on_the_tracer_is_powertools_on_x_ray() -> None:
    traced = imported(
        "import json, sys; "
        "from pacs_validator.aws.runtime.tracing import Untraced, function_tracer; "
        "t = function_tracer(); print(json.dumps({'untraced': isinstance(t.provider, Untraced),"
        " 'xray': 'aws_xray_sdk.core' in sys.modules, 'disabled': t.disabled}))", ROOT)
    assert traced == {"untraced": False, "xray": True, "disabled": False}


@pytest.fixture
def fresh_tracer() -> Any:
    """Tracer keeps its configuration on the class: each test starts from the defaults."""
    Tracer._reset_config()
    yield
    Tracer._reset_config()


def test_with_tracing_off_the_decorators_still_run_the_function_untraced(
        fresh_tracer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    from pacs_validator.aws.runtime.tracing import function_tracer

    tracer = function_tracer()
    assert isinstance(tracer.provider, Untraced) and tracer.disabled

    @tracer.capture_method(capture_response=True)
    def inner(value: int) -> int:
        return value + 1

    @tracer.capture_lambda_handler
    def handler(event: dict[str, int], context: object) -> int:
        return inner(event["value"])

    assert handler({"value": 1}, None) == 2
    with pytest.raises(ZeroDivisionError):
        tracer.capture_method(lambda: 1 // 0)()


def test_a_client_is_made_on_first_use_shared_and_made_again_once_forgotten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in LAMBDA.items():
        monkeypatch.setenv(key, value)
    clients = Clients()
    s3 = clients.s3()
    assert clients.s3() is s3
    assert clients.table("status") is clients.table("status")
    assert clients.dynamodb() is not clients.table("status").meta.client  # the resource's
    clients.forget()                                                       # converts values
    assert clients.s3() is not s3


def test_after_a_restore_random_is_reseeded_then_the_function_refreshes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before: list[Any] = []
    after: list[Any] = []
    monkeypatch.setattr(snapstart, "register_before_snapshot", before.append)
    monkeypatch.setattr(snapstart, "register_after_restore", after.append)
    warm, refresh = (lambda: None), (lambda: None)
    snapstart.on_snapshot(before=warm, after_restore=refresh)
    assert before == [warm]
    assert after == [random.seed, refresh]  # run in the order registered


def test_outside_lambdas_runtime_registering_hooks_does_nothing() -> None:
    with pytest.raises(ImportError):
        import snapshot_restore_py  # noqa: F401 - only Lambda's Python runtimes have it
    calls: list[str] = []
    snapstart.on_snapshot(before=lambda: calls.append("before"),
                          after_restore=lambda: calls.append("after"))
    assert calls == []
