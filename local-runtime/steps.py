#!/usr/bin/env python3
"""One step of `make demo`: a command whose output goes to a log file, and one line on the
terminal with the step's name and how long it took.

Why: the demo's steps (installing venvs, starting LocalStack, sam build and deploy) print
hundreds of lines of pip and sam output that nobody reads when they work, and that bury the
demo's result. Each step's output is kept whole in its log; the terminal shows
`build ............... 41.2 s`, or, when the step fails, the last lines of its log and its
path, and the step's exit status is passed on so that make stops there.

Usage: local-runtime/steps.py NAME LOG -- COMMAND [ARGS ...]
Only the standard library is used: it runs before the project's venv exists.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

TAIL_LINES = 30
"""Lines of a failed step's log shown on the terminal: enough for sam's or pip's error."""
NAME_WIDTH = 24
"""The dots after a step's name reach this column, so that the times line up."""


def step_label(name: str) -> str:
    """The start of a step's line: its name and dots up to the column of the times."""
    return f"{name} ".ljust(NAME_WIDTH, ".")


def step_time(seconds: float) -> str:
    """How long a step took, as its line ends."""
    return f" {seconds:5.1f} s"


def log_tail(log: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``log`` (all of a shorter one)."""
    with log.open(encoding="utf-8", errors="replace") as text:
        return [line.rstrip("\n") for line in deque(text, maxlen=lines)]


def run_step(name: str, log: Path, command: Sequence[str], out: TextIO = sys.stdout) -> int:
    """Run ``command`` with its output (stdout and stderr) written to ``log``, and print one
    line to ``out``: the step's name and its time, or, on failure, its exit status followed
    by the last lines of ``log`` and the log's path. Returns the command's exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out.write(step_label(name))
    out.flush()
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as written:
        try:
            status = subprocess.run(list(command), stdin=subprocess.DEVNULL, stdout=written,
                                    stderr=subprocess.STDOUT, check=False).returncode
        except OSError as error:  # the command itself could not be started
            written.write(f"{command[0]}: {error}\n")
            status = 127
    elapsed = time.monotonic() - started
    if status == 0:
        out.write(step_time(elapsed) + "\n")
        return 0
    out.write(f" failed after {elapsed:.1f} s (exit status {status})\n")
    for line in log_tail(log):
        out.write(f"    {line}\n")
    out.write(f"the whole output: {log}\n")
    out.flush()
    return status


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    name, log, command = argv[0], Path(argv[1]), argv[3:]
    return run_step(name, log, command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
