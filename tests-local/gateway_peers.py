"""Peers of the gateway for its tests (integration and end to end) and benchmarks
(pynetdicom): a C-ECHO, a crowd of associations asked for at once, and the sender's side of
storage commitment (an N-ACTION, and an SCP for the N-EVENT-REPORT the gateway sends back
over an association of its own)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from pacs_validator.gateway.commitment import (
    REQUEST_COMMIT,
    STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
)
from pacs_validator.gateway.storage_scp import VERIFICATION

CALLING_AE = "CT1"


def echoes(port: int) -> bool:
    """Whether the gateway on ``port`` answers a C-ECHO with success."""
    sender = AE(ae_title="ECHOER")
    sender.add_requested_context(VERIFICATION)
    association = sender.associate("127.0.0.1", port)
    if not association.is_established:
        return False
    try:
        return int(association.send_c_echo().Status) == 0x0000
    finally:
        association.release()


def crowd(port: int, count: int, hold_seconds: float) -> Counter[str]:
    """``count`` associations asked for at once, those established held open for up to
    ``hold_seconds`` (so that the others meet the gateway's limit): how many were
    established, rejected, or got no answer."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    release = threading.Event()

    def caller() -> None:
        sender = AE(ae_title="CROWD")
        sender.add_requested_context(VERIFICATION)
        sender.acse_timeout = sender.network_timeout = hold_seconds
        association = sender.associate("127.0.0.1", port)
        with lock:
            outcomes["established" if association.is_established else
                     "rejected" if association.is_rejected else "no answer"] += 1
        if association.is_established:
            release.wait(hold_seconds)
            association.release()

    callers = [threading.Thread(target=caller) for _ in range(count)]
    for thread in callers:
        thread.start()
    deadline = time.monotonic() + 2 * hold_seconds
    while sum(outcomes.values()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    for thread in callers:
        thread.join()
    return outcomes


class CommitmentListener:
    """The sender's side of storage commitment: an SCP for the reports the gateway sends
    over an association of its own (pynetdicom), keeping each (event type, information)."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, Dataset]] = []
        self.answer = 0x0000
        """The status each report is answered with."""
        ae = AE(ae_title=CALLING_AE)
        ae.add_supported_context(STORAGE_COMMITMENT, scu_role=False, scp_role=True)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_N_EVENT_REPORT, self.on_report)])
        self.port = int(self.server.server_address[1])

    def on_report(self, event: Any) -> tuple[int, None]:
        """Keep the report; answer it with :attr:`answer` (no Event Reply)."""
        self.reports.append((int(event.event_type), event.event_information))
        return self.answer, None


def request_commitment(port: int, instances: list[tuple[str, str]]) -> int:
    """N-ACTION Request Storage Commitment for (SOP class, SOP instance) pairs; its status."""
    sender = AE(ae_title=CALLING_AE)
    sender.add_requested_context(STORAGE_COMMITMENT)
    association = sender.associate("127.0.0.1", port)
    assert association.is_established
    information = Dataset()
    information.TransactionUID = generate_uid()
    information.ReferencedSOPSequence = []
    for sop_class, sop_instance in instances:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
        information.ReferencedSOPSequence.append(item)
    try:
        status, _ = association.send_n_action(information, REQUEST_COMMIT, STORAGE_COMMITMENT,
                                              STORAGE_COMMITMENT_INSTANCE)
    finally:
        association.release()
    return int(status.Status)


def reported(report: Dataset, sequence: str) -> list[tuple[str, ...]]:
    return sorted((item.ReferencedSOPInstanceUID,
                   *([f"0x{item.FailureReason:04X}"] if "FailureReason" in item else []))
                  for item in report.get(sequence, []))
