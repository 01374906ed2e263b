"""SnapStart runtime hooks: what a function does just before Lambda snapshots its initialised
execution environment, and after each restore from that snapshot.

Every environment restored from one snapshot starts with the same memory: the same state of
``random`` (botocore draws its retry jitter from it: restored environments would retry in
step), the same clients and the same cached secrets. After a restore, ``random`` is
reseeded from the kernel and the function's ``after_restore`` drops what must be fetched
again. The hooks come with Lambda's managed Python runtimes (``snapshot_restore_py``);
anywhere else nothing is ever snapshotted, and registering them does nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # not in Lambda's runtime: there are no snapshots

    def register_before_snapshot(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        pass

    def register_after_restore(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        pass


def on_snapshot(before: Callable[[], None], after_restore: Callable[[], None]) -> None:
    """Run ``before`` just before the snapshot (work worth keeping in it: models loaded,
    clients made) and, after each restore, reseed ``random`` then run ``after_restore``."""
    register_before_snapshot(before)
    register_after_restore(random.seed)
    register_after_restore(after_restore)
