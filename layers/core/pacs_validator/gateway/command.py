"""``pacs-validator gateway serve``: the Storage SCP in the foreground, until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from pacs_validator.dicom.config import ConfigError, load_config
from pacs_validator.gateway.http_body import DEFAULT_MAX_BYTES
from pacs_validator.gateway.stow import DEFAULT_MAX_CONNECTIONS, StowOptions
from pacs_validator.gateway.tokens import BearerTokens

DEFAULT_PORT = 11112


def add_parser(commands: Any) -> None:
    gateway = commands.add_parser(
        "gateway", help="a DICOM Storage SCP in front of the gate (the gateway extra)",
        description="Take DICOM C-STORE from modalities and PACS: each instance is judged "
                    "by the gate's file-level rules and answered with its real verdict, a "
                    "success only once it is fsynced in the spool.")
    actions = gateway.add_subparsers(dest="gateway_command", required=True)
    serve = actions.add_parser("serve", help="listen for C-ECHO and C-STORE")
    serve.add_argument("--spool", type=Path, required=True, metavar="DIR",
                       help="where accepted instances are kept (made if missing)")
    serve.add_argument("--ae-title", default="PACSVALIDATOR", help="this gateway's AE title")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: loopback only)")
    serve.add_argument("--allow-ae", action="extend", nargs="+", default=[],
                       metavar="AE[@HOST]",
                       help="calling AE titles let in (each from HOST only, if given); "
                            "none: every caller")
    serve.add_argument("--tls-cert", type=Path, metavar="PEM", help="TLS certificate")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    serve.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                       help="require client certificates signed by this authority")
    serve.add_argument("--max-pdu", type=int, default=16382, help="maximum PDU size (bytes)")
    serve.add_argument("--max-associations", type=int, default=10)
    serve.add_argument("--config", metavar="FILE", help="JSON configuration overrides")
    serve.add_argument("--http-port", type=int, metavar="PORT",
                       help="also take STOW-RS (DICOMweb) on this port (default: no HTTP)")
    serve.add_argument("--stow-token-file", type=Path, metavar="FILE",
                       help="the bearer tokens STOW-RS callers present, a 'LABEL TOKEN' a "
                            "line; the label names the sender (required with --http-port)")
    serve.add_argument("--stow-max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                       metavar="BYTES", help="the longest STOW-RS request body taken "
                                             "(default: 2 GiB)")
    serve.add_argument("--stow-max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                       metavar="N", help="STOW-RS connections served at once; the next wait")


def stow_options(args: argparse.Namespace) -> StowOptions | None:
    """The STOW-RS door's options (None without ``--http-port``), its tokens read before
    anything listens: a bad token file stops the gateway before it starts."""
    if args.http_port is None:
        return None
    if args.stow_token_file is None:
        raise ConfigError("--http-port needs --stow-token-file: STOW-RS callers are let in "
                          "by token")
    return StowOptions(args.http_port, BearerTokens.read(args.stow_token_file),
                       args.stow_max_bytes, args.stow_max_connections)


def run(args: argparse.Namespace) -> int:
    # Imported here: pynetdicom comes with the gateway extra, which the other commands
    # never need.
    from pacs_validator.gateway.storage_scp import AllowedCaller, GatewayOptions, StorageGateway

    door = stow_options(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = GatewayOptions(
        spool=args.spool, ae_title=args.ae_title, port=args.port, host=args.host,
        allowed=tuple(AllowedCaller.parse(text) for text in args.allow_ae),
        certificate=args.tls_cert, key=args.tls_key, client_ca=args.tls_client_ca,
        max_pdu=args.max_pdu, max_associations=args.max_associations)
    gateway = StorageGateway(options, load_config(args.config))
    server = gateway.start()
    print(f"gateway {options.ae_title} listening on {options.host}:{server.server_address[1]}, "
          f"spool {options.spool}", flush=True)
    stow = None if door is None else gateway.start_stow(door)
    if stow is not None:
        print(f"STOW-RS on {options.host}:{stow.server_address[1]}", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    server.shutdown()
    if stow is not None:
        stow.stop()
    return 0
