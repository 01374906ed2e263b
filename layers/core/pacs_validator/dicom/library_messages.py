"""pydicom's own warnings, kept out of the logs while a file is read and checked.

pydicom reports odd values twice: as a Python warning and as a record of its ``pydicom``
logger, and some of those messages quote the value (``Invalid value for VR UI: '1.2.x'``).
In a Lambda both would reach CloudWatch as unstructured lines carrying patient data. While
:func:`library_messages_counted` is active, both channels are captured and only a count by
kind (warning category, or log level) is logged, as one value-free entry.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)
PYDICOM_LOGGER = "pydicom"


class _Counter(logging.Handler):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"log.{record.levelname}"] += 1


@contextmanager
def library_messages_counted() -> Iterator[Counter[str]]:
    """Capture pydicom's warnings and log records; yields the counts by kind, which are
    complete (and logged, when there are any) once the block ends."""
    counts: Counter[str] = Counter()
    pydicom_logger = logging.getLogger(PYDICOM_LOGGER)
    handler = _Counter(counts)
    propagate = pydicom_logger.propagate
    pydicom_logger.addHandler(handler)
    pydicom_logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield counts
    finally:
        pydicom_logger.removeHandler(handler)
        pydicom_logger.propagate = propagate
    counts.update(f"warning.{w.category.__name__}" for w in caught)
    if counts:
        logger.info("pydicom messages withheld (they may quote values): %s",
                    ", ".join(f"{kind}={n}" for kind, n in sorted(counts.items())),
                    extra={"pydicom_messages": dict(counts)})
