"""Upload progress: bars on a terminal (rich, from the client extra), a few plain lines in
logs and pipes."""

from __future__ import annotations

import importlib.util
import io
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TextIO

SIZE_UNITS = ("bytes", "kB", "MB", "GB", "TB")
PLAIN_STEPS = 4
"""Without a terminal, a study's progress is printed this many times (and when it starts)."""


class ProgressView(Protocol):
    """Where upload progress goes: bars on a terminal, a few plain lines elsewhere."""

    def add(self, label: str, files: int, size: int, files_done: int = 0, size_done: int = 0
            ) -> int:
        """A study of ``files`` files and ``size`` bytes, ``files_done`` and ``size_done`` of
        them received already (by an earlier run); its task id. Every study is added before
        any is started, so the overall total is known before the first byte is sent."""

    def start(self, task: int) -> None:
        """The study's files start to be sent: its throughput is counted from now."""

    def advance(self, task: int, sent: int = 0, files: int = 0) -> None:
        """``sent`` more bytes and ``files`` more files of the study done (thread-safe)."""

    def note(self, text: str) -> None:
        """A message printed without breaking the bars."""


@dataclass
class _Task:
    label: str
    files: int
    size: int
    files_done: int = 0
    sent: int = 0
    sent_before: int = 0
    """Bytes received by an earlier run: not counted in the throughput."""
    started: float = field(default_factory=time.monotonic)
    printed: int = -1


class PlainProgress:
    """Progress as plain lines, for logs and pipes: a study's files, bytes and throughput
    when it starts, at each quarter and when it is done, then the overall total."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tasks: list[_Task] = []
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def add(self, label: str, files: int, size: int, files_done: int = 0, size_done: int = 0
            ) -> int:
        with self.lock:
            self.tasks.append(_Task(label, files, size, files_done, size_done, size_done))
            return len(self.tasks) - 1

    def start(self, task: int) -> None:
        with self.lock:
            self.tasks[task].started = time.monotonic()
        self.advance(task)

    def advance(self, task: int, sent: int = 0, files: int = 0) -> None:
        with self.lock:
            state = self.tasks[task]
            state.sent += sent
            state.files_done += files
            step = state.files_done * PLAIN_STEPS // max(state.files, 1)
            if step > state.printed:
                state.printed = step
                self._line(state.label, state.files_done, state.files, state.sent, state.size,
                           state.sent - state.sent_before, state.started)

    def note(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def close(self) -> None:
        files = sum(t.files_done for t in self.tasks)
        sent = sum(t.sent for t in self.tasks)
        self._line(f"all {len(self.tasks)} study(ies)", files, sum(t.files for t in self.tasks),
                   sent, sum(t.size for t in self.tasks),
                   sent - sum(t.sent_before for t in self.tasks), self.started)

    def _line(self, label: str, files: int, of: int, sent: int, size: int, sent_now: int,
              since: float) -> None:
        """Files and bytes done of the total; the throughput of ``sent_now``, the bytes this
        run sent (what an earlier run sent took no time of this one)."""
        elapsed = max(time.monotonic() - since, 1e-6)
        print(f"{label}: {files}/{of} files, {_bytes(sent)} of {_bytes(size)}, "
              f"{_bytes(sent_now / elapsed)}/s", file=self.out, flush=True)


def _bytes(size: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as rich shows them)."""
    power = min(int(math.log10(max(size, 1)) // 3), len(SIZE_UNITS) - 1)
    value = size / 1000**power
    return f"{value:.0f} bytes" if power == 0 else f"{value:.1f} {SIZE_UNITS[power]}"


@contextmanager
def progress_view(out: TextIO) -> Iterator[ProgressView]:
    """Bars (rich, from the client extra) with throughput and ETA when ``out`` is a
    terminal; plain lines when it is not, or when rich is not installed."""
    if out.isatty() and importlib.util.find_spec("rich") is not None:
        with _rich_view(out) as view:
            yield view
        return
    plain = PlainProgress(out)
    yield plain
    plain.close()


@contextmanager
def _rich_view(out: TextIO) -> Iterator[ProgressView]:
    """One bar per study and one overall: files, bytes, throughput, time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    class RichProgress:
        """A bar per study and one for all (tasks are never removed: id = index)."""

        def __init__(self, progress: Progress) -> None:
            self.progress = progress
            self.lock = threading.Lock()
            self.overall = progress.add_task("all studies", total=0, files=0, of=0)

        def add(self, label: str, files: int, size: int, files_done: int = 0,
                size_done: int = 0) -> int:
            """Done work is set, not advanced: rich would count it in the throughput."""
            with self.lock:
                overall = self.progress.tasks[self.overall]
                self.progress.reset(self.overall, total=(overall.total or 0) + size,
                                    completed=int(overall.completed) + size_done,
                                    files=overall.fields["files"] + files_done,
                                    of=overall.fields["of"] + files)
                return self.progress.add_task(label, total=size, completed=size_done,
                                              files=files_done, of=files, start=False)

        def start(self, task: int) -> None:
            self.progress.start_task(TaskID(task))

        def advance(self, task: int, sent: int = 0, files: int = 0) -> None:
            with self.lock:  # the file counts are read, then written
                for task_id in (TaskID(task), self.overall):
                    done = self.progress.tasks[task_id].fields["files"] + files
                    self.progress.update(task_id, advance=sent, files=done)

        def note(self, text: str) -> None:
            self.progress.console.print(text, markup=False, highlight=False)

    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.fields[files]}/{task.fields[of]} files"), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=out)) as progress:
        yield RichProgress(progress)


SHOW_AFTER = 1.0
"""Seconds of work after which a file count bar appears: a quick run shows none."""


class FileCount(Protocol):
    """Files done of a known number, and where to print meanwhile without breaking a bar."""

    out: TextIO

    def advance(self) -> None:
        """One more file done."""


@dataclass
class _NoBar:
    out: TextIO

    def advance(self) -> None:
        pass


@contextmanager
def file_count(out: TextIO, total: int, label: str) -> Iterator[FileCount]:
    """A bar of ``total`` files on ``out`` when it is a terminal (and rich, from the client
    extra, is installed), shown once the work has taken ``SHOW_AFTER`` seconds and gone
    when it is done; lines printed to the count's ``out`` meanwhile appear above it. On a
    pipe or a log, no bar: the lines alone."""
    if not out.isatty() or importlib.util.find_spec("rich") is None:
        yield _NoBar(out)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    class AboveBar(io.TextIOBase):
        """Whole lines printed above the bar as they are (no markup, never wrapped)."""

        def __init__(self, console: Console) -> None:
            self.console = console
            self.partial = ""

        def write(self, text: str) -> int:
            *lines, self.partial = (self.partial + text).split("\n")
            for line in lines:
                self.console.print(line, markup=False, highlight=False, emoji=False,
                                   soft_wrap=True)
            return len(text)

        def flush(self) -> None:
            if self.partial:
                self.write("\n")

    class Bar:
        def __init__(self, progress: Progress) -> None:
            self.progress = progress
            self.out: TextIO = AboveBar(progress.console)  # type: ignore[assignment]
            self.task = progress.add_task(label, total=total, visible=False)
            self.started = time.monotonic()

        def advance(self) -> None:
            shown = time.monotonic() - self.started >= SHOW_AFTER
            self.progress.update(self.task, advance=1, visible=shown)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(file=out), transient=True) as progress:
        bar = Bar(progress)
        yield bar
        bar.out.flush()
