"""The sender's side of storage commitment, for the gateway's tests (integration and end to
end): an N-ACTION asking for a commitment, and an SCP for the N-EVENT-REPORT the gateway
sends back over an association of its own (pynetdicom)."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from pacs_validator.gateway.commitment import (
    REQUEST_COMMIT,
    STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
)

CALLING_AE = "CT1"


class CommitmentListener:
    """The sender's side of storage commitment: an SCP for the reports the gateway sends
    over an association of its own (pynetdicom), keeping each (event type, information)."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, Dataset]] = []
        ae = AE(ae_title=CALLING_AE)
        ae.add_supported_context(STORAGE_COMMITMENT, scu_role=False, scp_role=True)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_N_EVENT_REPORT, self.on_report)])
        self.port = int(self.server.server_address[1])

    def on_report(self, event: Any) -> int:
        self.reports.append((int(event.event_type), event.event_information))
        return 0x0000


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
