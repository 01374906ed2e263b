"""make demo's step runner (local-runtime/steps.py): one line per step that works, the log's
last lines and its path for one that fails, and the command's exit status either way."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

from local_scripts import load

steps = load("steps.py")


def test_a_step_that_works_prints_one_line_with_its_time_and_logs_its_output(
    tmp_path: Path,
) -> None:
    log = tmp_path / "demo" / "build.log"
    out = io.StringIO()
    command = [sys.executable, "-c", "print('Running PythonPipBuilder:ResolveDependencies')"]
    assert steps.run_step("build", log, command, out) == 0
    assert re.fullmatch(r"build \.{18} +\d+\.\d s\n", out.getvalue())
    assert log.read_text() == "Running PythonPipBuilder:ResolveDependencies\n"


def test_a_step_that_fails_prints_the_last_lines_of_its_log_and_where_it_is(
    tmp_path: Path,
) -> None:
    log = tmp_path / "deploy.log"
    out = io.StringIO()
    script = ("import sys\n"
              "for n in range(100): print(f'line {n}')\n"
              "sys.exit('Error: Failed to create changeset')")
    assert steps.run_step("deploy", log, [sys.executable, "-c", script], out) == 1
    printed = out.getvalue().splitlines()
    assert re.fullmatch(r"deploy \.+ failed after \d+\.\d s \(exit status 1\)", printed[0])
    assert printed[1:-1] == [f"    line {n}" for n in range(71, 100)] + [
        "    Error: Failed to create changeset"]
    assert printed[-1] == f"the whole output: {log}"
    assert "line 0\n" in log.read_text()


def test_a_command_that_cannot_start_fails_its_step(tmp_path: Path) -> None:
    out = io.StringIO()
    status = steps.run_step("venv", tmp_path / "venv.log", [str(tmp_path / "missing")], out)
    assert status == 127
    assert "failed after" in out.getvalue()
    assert "missing" in (tmp_path / "venv.log").read_text()


def test_the_command_line_wants_a_name_a_log_and_a_command() -> None:
    assert steps.main(["build", "build.log", "make"]) == 2
