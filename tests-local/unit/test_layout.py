"""The package's rules that import-linter cannot see: what the handlers import, and the
contract's form renewal rule the API applies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pacs_validator.contract.states import State
from pacs_validator.contract.upload_request import StudyClosedError, renewed_form_expiry

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))


def _core_imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return [m for m in modules if m.split(".")[0] == "pacs_validator"]


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda p: p.parent.name)
def test_handlers_import_only_the_aws_adapters_and_runtime_and_the_contract(handler: Path) -> None:
    imports = _core_imports(handler)
    assert imports, "every handler uses the core"
    assert [m for m in imports
            if not m.startswith(("pacs_validator.aws.", "pacs_validator.contract."))] == []
    assert [m for m in imports if m.startswith("pacs_validator.aws.operations")] == [], (
        "the operator tools are run by people, not by a handler")


def test_a_renewed_form_lasts_its_expiry_or_until_the_upload_deadline() -> None:
    receiving = State.RECEIVING
    assert renewed_form_expiry(receiving, 10_000, now=1_000, expiry_seconds=900) == 900
    assert renewed_form_expiry(receiving, 10_000, now=9_700, expiry_seconds=900) == 300
    assert renewed_form_expiry(State.AWAITING_UPLOAD, 10_000, 1_000, 900) == 900


@pytest.mark.parametrize(("state", "deadline", "message"), [
    (State.VALIDATING, 10_000, "the study is VALIDATING and takes no more files"),
    (State.STORED, 10_000, "the study is STORED and takes no more files"),
    (State.RECEIVING, 1_000,
     "the study is RECEIVING past its upload deadline and takes no more files"),
])
def test_no_form_for_a_study_past_receiving_or_past_its_deadline(
    state: State, deadline: int, message: str
) -> None:
    with pytest.raises(StudyClosedError, match=f"^{message}$"):
        renewed_form_expiry(state, deadline, now=1_000, expiry_seconds=900)
