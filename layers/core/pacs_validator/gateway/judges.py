"""Where the gateway judges its instances: in worker processes, so that associations (and
STOW-RS requests) arriving at once are judged on every core, not one at a time under the
interpreter's lock of the process that receives them.

The workers are started with ``spawn``, not ``fork``: the receiving process runs threads
(one per association) whose locks a forked child would inherit held. Each worker reads the
instance from the file the door wrote (only its path crosses over) and sends back the
verdict, a small picklable :class:`~pacs_validator.dicom.validation.InstanceResult`. With no
workers, instances are judged in the receiving process itself. A worker whose gateway is
gone (killed with SIGKILL, which leaves it no time to stop its pool) exits within
:data:`ORPHAN_CHECK_SECONDS` rather than live on.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.validation import InstanceResult, validate_file

ORPHAN_CHECK_SECONDS = 1.0

_worker_config: ValidatorConfig | None = None
"""The configuration of this worker process, set once when it starts."""


def _start_worker(config: ValidatorConfig) -> None:
    global _worker_config
    _worker_config = config
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(0)


def _judge_in_worker(path: str) -> InstanceResult:
    assert _worker_config is not None  # set by the pool's initializer
    return validate_file(Path(path), _worker_config, name=Path(path).name)[0]


class Judges:
    """Judges instances by ``config``, in ``processes`` worker processes (0: here)."""

    def __init__(self, config: ValidatorConfig, processes: int) -> None:
        self.config = config
        self.pool = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(config,)) if processes else None

    def judge(self, path: Path) -> InstanceResult:
        """The verdict on the file at ``path``; it waits for a free worker."""
        if self.pool is None:
            return validate_file(path, self.config, name=path.name)[0]
        return self.pool.submit(_judge_in_worker, str(path)).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
