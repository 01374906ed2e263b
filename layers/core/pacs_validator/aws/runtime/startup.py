"""What a handler does while Lambda imports it: the cold start every new execution
environment pays before its first event."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def garbage_collection_paused() -> Iterator[None]:
    """Import a handler's dependencies without collecting garbage, then freeze what they made.

    Importing boto3, Powertools and pydicom creates 70,000 or so tracked objects, nearly
    all of which live as long as the environment. The collections their allocation triggers
    walk that growing heap and find almost nothing to free: about a fifth of the validator's
    cold import (``benchmarks/bench_cold_start.py``). Frozen (:func:`gc.freeze`), those
    objects are also left out of the full collections of every later invocation.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
