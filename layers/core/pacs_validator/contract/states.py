"""The study's states: where it can be, which of them still take files, which are final.

``AWAITING_UPLOAD → RECEIVING → VALIDATING → REJECTED | VALID → STORED``, plus ``FAILED``
(retries exhausted, nothing moved by the processing deadline) and ``INCOMPLETE`` (the
declared files did not all arrive by the upload deadline). Every study ends in one of the
terminal states.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    AWAITING_UPLOAD = "AWAITING_UPLOAD"
    RECEIVING = "RECEIVING"
    VALIDATING = "VALIDATING"
    REJECTED = "REJECTED"
    VALID = "VALID"
    STORED = "STORED"
    FAILED = "FAILED"
    INCOMPLETE = "INCOMPLETE"


OPEN_STATES = (State.AWAITING_UPLOAD, State.RECEIVING)
"""The states in which a study takes files."""
TERMINAL_STATES = (State.REJECTED, State.STORED, State.FAILED, State.INCOMPLETE)
