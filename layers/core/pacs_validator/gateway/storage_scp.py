"""The Storage SCP: C-ECHO, C-STORE for every storage SOP class, each instance judged and
spooled before it is answered, and Storage Commitment (pynetdicom).

pynetdicom writes each received data set to a temporary file as it arrives
(``STORE_RECV_CHUNKED_DATASET``), so an instance of any size costs the gateway disk, not
memory. The handler judges it there (:mod:`~pacs_validator.gateway.intake`); one that passes
is copied into the spool and only then answered. The end of an association (released,
aborted or dropped) lets the study parts it sent to close.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, _config, build_role, evt
from pynetdicom.transport import ThreadedAssociationServer

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.gateway.commitment import (
    ALL_COMMITTED,
    REQUEST_COMMIT,
    SOME_FAILED,
    STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    CommitmentRequest,
    Commitments,
    Outcome,
)
from pacs_validator.gateway.intake import Intake
from pacs_validator.gateway.spool import Spool
from pacs_validator.gateway.statuses import Answer
from pacs_validator.gateway.stow import StowOptions, StowServer

logger = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE lossless
]
"""What the core reads: every instance in these is judged by the same rules."""
VERIFICATION = "1.2.840.10008.1.1"
"""The Verification SOP class (C-ECHO)."""
REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03
SUCCESS, INVALID_ARGUMENT_VALUE, NO_SUCH_ACTION = 0x0000, 0x0115, 0x0123
NO_DELAY = 1
"""TCP_NODELAY on the listening socket, which the accepted ones inherit (Linux): with
Nagle's algorithm on, a delayed ACK holds every DIMSE exchange that ends in a short
segment (a C-STORE response), about 40 ms each."""
LISTEN_BACKLOG = 1024
"""Connections the kernel queues before they are accepted: socketserver's 5 drops (with a
reset) the callers of a burst, such as many modalities sending at once after a network
outage, before the gateway ever sees them."""


@dataclass(frozen=True)
class AllowedCaller:
    """A calling AE title allowed in, from any host or only from ``host``."""

    ae_title: str
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> AllowedCaller:
        """``AE`` or ``AE@host``."""
        title, _, host = text.partition("@")
        return cls(title.strip(), host.strip() or None)

    def admits(self, ae_title: str, host: str) -> bool:
        return ae_title.strip() == self.ae_title and self.host in (None, host)


@dataclass(frozen=True)
class GatewayOptions:
    """How the gateway listens (``pacs-validator gateway serve``)."""

    spool: Path
    ae_title: str = "PACSVALIDATOR"
    port: int = 11112
    host: str = "127.0.0.1"
    allowed: Sequence[AllowedCaller] = ()
    """Empty: any calling AE title from any host."""
    certificate: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    """With it, a caller must present a certificate this authority signed."""
    max_pdu: int = 16382
    max_associations: int = 10
    judges: int = 0
    """Worker processes that judge instances (:mod:`~pacs_validator.gateway.judges`); 0:
    the receiving process judges them itself."""
    commit_to: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    """Calling AE title -> the host and port its storage commitment reports go to."""

    @staticmethod
    def parse_commit_to(text: str) -> tuple[str, tuple[str, int]]:
        """``AE=HOST:PORT``."""
        title, _, address = text.partition("=")
        host, _, port = address.rpartition(":")
        if not title.strip() or not host or not port.isdigit():
            raise ValueError(f"--commit-to wants AE=HOST:PORT, not {text!r}")
        return title.strip(), (host, int(port))


def tls_context(options: GatewayOptions) -> ssl.SSLContext | None:
    """The TLS context of a gateway given a certificate and key; None otherwise."""
    if options.certificate is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(options.certificate, options.key)
    if options.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(options.client_ca)
    return context


def referenced_item(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
    return item


def commitment_report(request: CommitmentRequest, known: Outcome) -> Dataset:
    """The N-EVENT-REPORT's Event Information (PS3.4 Table J.3-2)."""
    report = Dataset()
    report.TransactionUID = request.transaction_uid
    if known.committed:
        report.ReferencedSOPSequence = [referenced_item(*pair) for pair in known.committed]
    failed = []
    for sop_class, sop_instance, reason in known.failed:
        failed.append(referenced_item(sop_class, sop_instance))
        failed[-1].FailureReason = reason
    if failed:
        report.FailedSOPSequence = failed
    return report


def status_dataset(answer: Answer) -> Dataset:
    status = Dataset()
    status.Status = answer.status
    if answer.comment:
        status.ErrorComment = answer.comment
    return status


class StorageGateway:
    """One gateway: its application entity, the rules it judges by, and its spool."""

    def __init__(self, options: GatewayOptions, config: ValidatorConfig) -> None:
        self.options = options
        self.spool = Spool(options.spool)
        self.intake = Intake(config, self.spool, options.judges)
        self.commitments = Commitments(self.spool, self.report_commitment)

    def application_entity(self) -> AE:
        ae = AE(ae_title=self.options.ae_title)
        ae.maximum_pdu_size = self.options.max_pdu
        ae.maximum_associations = self.options.max_associations
        ae.require_calling_aet = sorted({caller.ae_title for caller in self.options.allowed})
        ae.add_supported_context(VERIFICATION)
        ae.add_supported_context(STORAGE_COMMITMENT)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), TRANSFER_SYNTAXES)
        return ae

    def start(self) -> ThreadedAssociationServer:
        """Listen in the background; the server's ``shutdown()`` stops it."""
        _config.STORE_RECV_CHUNKED_DATASET = True
        handlers: list[Any] = [(evt.EVT_REQUESTED, self.on_request),
                               (evt.EVT_C_ECHO, self.on_echo), (evt.EVT_C_STORE, self.on_store),
                               (evt.EVT_N_ACTION, self.on_action),
                               (evt.EVT_CONN_CLOSE, self.on_closed)]
        server = self.application_entity().start_server(
            (self.options.host, self.options.port), block=False, evt_handlers=handlers,
            ssl_context=tls_context(self.options))
        # block=False always returns the server, listening.
        assert server is not None and server.socket is not None
        server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, NO_DELAY)
        server.socket.listen(LISTEN_BACKLOG)
        return server

    def start_stow(self, options: StowOptions) -> StowServer:
        """Listen for STOW-RS too, on the gateway's host and with its TLS, into its intake."""
        return StowServer.start(self.options.host, self.intake, options,
                                tls_context(self.options))

    def on_request(self, event: Any) -> None:
        """Refuse an association from a host the allow-list does not name for its calling
        AE title (an unknown title pynetdicom rejects itself: ``require_calling_aet``)."""
        if not self.options.allowed:
            return
        requestor = event.assoc.requestor
        title = str(requestor.primitive.calling_ae_title).strip()
        named = [caller for caller in self.options.allowed if caller.ae_title == title]
        if named and not any(c.admits(title, requestor.address) for c in named):
            logger.warning("association refused: calling AE not allowed",
                           extra={"calling_ae": title})
            event.assoc.acse.send_reject(REJECTED_PERMANENT, SERVICE_USER,
                                         CALLING_AE_NOT_RECOGNISED)

    def on_echo(self, event: Any) -> int:
        return 0x0000

    def on_store(self, event: Any) -> Dataset:
        """Judge one instance, keep it if it passes, and say which."""
        taken = self.intake.take(Path(event.dataset_path), str(event.assoc.requestor.ae_title),
                                 event.assoc)
        return status_dataset(taken.answer)

    def on_closed(self, event: Any) -> None:
        """The connection is gone: its parts may close, and the temporary file of a data set
        it was sending when it dropped is removed (pynetdicom leaves it behind)."""
        self.intake.ended(event.assoc)
        message = getattr(event.assoc.dimse, "message", None)
        partial = getattr(message, "_data_set_file", None)
        if partial is not None:
            partial.close()
            Path(partial.name).unlink(missing_ok=True)

    def on_action(self, event: Any) -> tuple[int, None]:
        """Keep a storage commitment request (its report comes once the cloud's verdict is
        in); anything else asked of Storage Commitment is refused."""
        if event.action_type != REQUEST_COMMIT:
            return NO_SUCH_ACTION, None
        information = event.action_information
        transaction = str(information.get("TransactionUID", "")).strip()
        instances = [(str(item.get("ReferencedSOPClassUID", "")),
                      str(item.get("ReferencedSOPInstanceUID", "")))
                     for item in information.get("ReferencedSOPSequence", [])]
        if not transaction or not instances or not all(uid for _, uid in instances):
            return INVALID_ARGUMENT_VALUE, None
        self.commitments.request(transaction, str(event.assoc.requestor.ae_title).strip(),
                                 instances)
        return SUCCESS, None

    def report_commitment(self, request: CommitmentRequest, known: Outcome) -> None:
        """Send the N-EVENT-REPORT over a new association to the AE that asked, the gateway
        in the SCP role; raises when it was not delivered."""
        address = self.options.commit_to.get(request.calling_ae)
        if address is None:
            raise LookupError(f"no --commit-to address for {request.calling_ae}")
        ae = AE(ae_title=self.options.ae_title)
        ae.add_requested_context(STORAGE_COMMITMENT)
        association = ae.associate(*address, ae_title=request.calling_ae,
                                   ext_neg=[build_role(STORAGE_COMMITMENT, scp_role=True)])
        if not association.is_established:
            raise ConnectionError("the association was not accepted")
        try:
            status, _ = association.send_n_event_report(
                commitment_report(request, known),
                SOME_FAILED if known.failed else ALL_COMMITTED,
                STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE)
        finally:
            association.release()
        if int(status.get("Status", -1)) != SUCCESS:  # empty: no valid answer came
            raise ConnectionError("the report was not acknowledged")
