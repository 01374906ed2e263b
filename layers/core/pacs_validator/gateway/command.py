"""``pacs-validator gateway``: ``serve`` runs the Storage SCP and sends its studies to the
cloud, in the foreground until SIGTERM or SIGINT; ``status`` reads what a spool holds."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pacs_validator.dicom.config import ValidatorConfig, build_config, load_config
from pacs_validator.gateway.logs import configure_logging
from pacs_validator.gateway.report import print_entries, study_entries
from pacs_validator.gateway.settings import DEFAULTS, INLINE_VALIDATOR, settings
from pacs_validator.gateway.settings import add_arguments as add_settings_arguments
from pacs_validator.gateway.spool import is_spool
from pacs_validator.gateway.stow import StowOptions
from pacs_validator.gateway.tokens import BearerTokens
from pacs_validator.transfer.client import API_VARIABLE, PacsClient

logger = logging.getLogger(__name__)
T = TypeVar("T")
POLL_SECONDS = 2.0
"""How often the gateway looks for studies to close, send and follow, and for storage
commitments to report."""
DRAIN_SECONDS = 30.0
"""How long a stopping gateway waits for its open associations to end before it aborts
them (an unanswered instance is sent again by its sender)."""


class UsageError(Exception):
    """An option of ``gateway`` that cannot be used: exit 2 with its message."""


def add_parser(commands: Any) -> None:
    gateway = commands.add_parser(
        "gateway", help="a DICOM Storage SCP in front of the gate (the gateway extra)",
        description="Take DICOM C-STORE from modalities and PACS: each instance is judged "
                    "by the gate's file-level rules and answered with its real verdict, a "
                    "success only once it is fsynced in the spool; each study is then "
                    "uploaded through the API and followed to the cloud's verdict.")
    actions = gateway.add_subparsers(dest="gateway_command", required=True)
    serve = actions.add_parser("serve", help="listen for C-ECHO and C-STORE; forward studies",
                               epilog=f"The API's bearer token is read from "
                                      f"$PACS_VALIDATOR_TOKEN, the API from --api or "
                                      f"${API_VARIABLE}.")
    add_serve_arguments(serve)
    status = actions.add_parser("status", help="each study in a spool: received, refused, "
                                               "uploaded, and the cloud's state")
    add_spool_argument(status)
    status.add_argument("--json", action="store_true", help="print the entries as JSON")


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """Every option of ``serve``, with default None: its default is the settings' (the
    help says it), so a config file's value can stand where the command line gave none."""
    serve.add_argument("--spool", type=Path, metavar="DIR",
                       help="where accepted instances are kept (made if missing)")
    serve.add_argument("--ae-title", metavar="AE",
                       help=f"this gateway's AE title (default {DEFAULTS['ae_title']})")
    serve.add_argument("--port", type=int, help=f"DIMSE port (default {DEFAULTS['port']})")
    serve.add_argument("--host",
                       help=f"address to listen on (default {DEFAULTS['host']}: loopback)")
    serve.add_argument("--allow-ae", action="extend", nargs="+", metavar="AE[@HOST]",
                       help="calling AE titles let in (each from HOST only, if given); "
                            "none: every caller")
    serve.add_argument("--stable-seconds", type=float, metavar="SECONDS",
                       help=f"a study closes this long after its last instance, once its "
                            f"associations ended (default {DEFAULTS['stable_seconds']:g})")
    serve.add_argument("--api", metavar="URL",
                       help=f"the API studies are uploaded to (default: ${API_VARIABLE})")
    serve.add_argument("--commit-to", action="extend", nargs="+", metavar="AE=HOST:PORT",
                       help="where the storage commitment reports of AE go")
    serve.add_argument("--tls-cert", type=Path, metavar="PEM", help="TLS certificate")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    serve.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                       help="require client certificates signed by this authority")
    serve.add_argument("--max-pdu", type=int, metavar="BYTES",
                       help=f"maximum PDU size (default {DEFAULTS['max_pdu']})")
    serve.add_argument("--max-associations", type=int, metavar="N",
                       help=f"associations open at once (default "
                            f"{DEFAULTS['max_associations']})")
    serve.add_argument("--http-port", type=int, metavar="PORT",
                       help="also take STOW-RS (DICOMweb) on this port (default: no HTTP)")
    serve.add_argument("--stow-token-file", type=Path, metavar="FILE",
                       help="the bearer tokens STOW-RS callers present, a 'LABEL TOKEN' a "
                            "line; the label names the sender (required with --http-port)")
    serve.add_argument("--stow-max-bytes", type=int, metavar="BYTES",
                       help=f"the longest STOW-RS request body taken (default "
                            f"{DEFAULTS['stow_max_bytes'] // 1024**3} GiB)")
    serve.add_argument("--stow-max-connections", type=int, metavar="N",
                       help=f"STOW-RS connections served at once; the next wait (default "
                            f"{DEFAULTS['stow_max_connections']})")
    serve.add_argument("--judges", type=int, metavar="N",
                       help=f"worker processes that judge instances, so that associations "
                            f"at once use every core; 0: judged in the receiving process "
                            f"(default {DEFAULTS['judges']}, the cores here)")
    serve.add_argument("--validator-config", type=Path, metavar="FILE",
                       help="the rules' configuration overrides, as validate --config reads")
    add_settings_arguments(serve)


def add_spool_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spool", type=Path, required=True, metavar="DIR",
                        help="the gateway's spool")


def run(args: argparse.Namespace) -> int:
    try:
        if args.gateway_command == "status":
            return print_status(args)
        return serve(args)
    except UsageError as error:
        print(f"pacs-validator: {error}", file=sys.stderr)
        return 2


def print_status(args: argparse.Namespace) -> int:
    if not is_spool(args.spool):
        raise UsageError(f"{args.spool} is not a gateway's spool")
    entries = study_entries(args.spool)
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        print_entries(entries, sys.stdout)
    return 0


def parsed(parse: Callable[[str], T], texts: list[str]) -> list[T]:
    """Each option's value parsed; a value that cannot be is a usage error."""
    try:
        return [parse(text) for text in texts]
    except ValueError as error:
        raise UsageError(str(error)) from None


def stow_options(chosen: dict[str, Any]) -> StowOptions | None:
    """The STOW-RS door's options (None without an HTTP port), its tokens read before
    anything listens: a bad token file stops the gateway before it starts."""
    if chosen["http_port"] is None:
        return None
    if chosen["stow_token_file"] is None:
        raise UsageError("--http-port needs --stow-token-file: STOW-RS callers are let in "
                         "by token")
    return StowOptions(chosen["http_port"], BearerTokens.read(chosen["stow_token_file"]),
                       chosen["stow_max_bytes"], chosen["stow_max_connections"])


def validator_config(chosen: dict[str, Any]) -> ValidatorConfig:
    """The rules' configuration: from ``--validator-config``'s file, or given inline in the
    config file, or the defaults."""
    if chosen["validator_config"] is not None and chosen[INLINE_VALIDATOR] is not None:
        raise UsageError("give the validator's overrides in the config file or in "
                         "--validator-config, not both")
    if chosen[INLINE_VALIDATOR] is not None:
        return build_config(chosen[INLINE_VALIDATOR])
    return load_config(chosen["validator_config"])


def background(stopped: threading.Event, steps: list[Callable[[float], None]]) -> None:
    """Take every step every :data:`POLL_SECONDS` until ``stopped`` is set (the steps under
    way are finished first). A step that fails is logged and taken again next time: the
    gateway goes on taking instances, and they are sent once the cause is gone."""
    while not stopped.is_set():
        for step in steps:
            try:
                step(time.time())
            except Exception as error:  # noqa: BLE001 - the loop outlives any one failure
                logger.error("a background step failed",
                             extra={"step": step.__qualname__, "error": type(error).__name__})
        stopped.wait(POLL_SECONDS)


def serve(args: argparse.Namespace) -> int:
    # Imported here: pynetdicom comes with the gateway extra, which the other commands
    # never need.
    from pacs_validator.gateway.forwarding import Forwarder
    from pacs_validator.gateway.storage_scp import AllowedCaller, GatewayOptions, StorageGateway

    try:
        chosen = settings(args)
        client = PacsClient.from_environment(chosen["api"])
    except ValueError as error:  # SettingsError included
        raise UsageError(str(error)) from None
    configure_logging()
    options = GatewayOptions(
        spool=chosen["spool"], ae_title=chosen["ae_title"], port=chosen["port"],
        host=chosen["host"], allowed=tuple(parsed(AllowedCaller.parse, chosen["allow_ae"])),
        certificate=chosen["tls_cert"], key=chosen["tls_key"],
        client_ca=chosen["tls_client_ca"], max_pdu=chosen["max_pdu"],
        max_associations=chosen["max_associations"], judges=chosen["judges"],
        commit_to=dict(parsed(GatewayOptions.parse_commit_to, chosen["commit_to"])))
    door = stow_options(chosen)
    gateway = StorageGateway(options, validator_config(chosen))
    forwarder = Forwarder(gateway.spool, client, stable_seconds=chosen["stable_seconds"])
    stopped = threading.Event()
    forwarding = threading.Thread(target=background, name="forwarder",
                                  args=(stopped, [forwarder.step, gateway.commitments.step]))
    server = gateway.start()
    forwarding.start()
    print(f"gateway {options.ae_title} listening on {options.host}:{server.server_address[1]}, "
          f"spool {options.spool}, forwarding to {client.api_base}", flush=True)
    stow = None if door is None else gateway.start_stow(door)
    if stow is not None:
        print(f"STOW-RS on {options.host}:{stow.server_address[1]}", flush=True)
    signalled = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: signalled.set())
    signalled.wait()
    server.shutdown()  # no new association; those open may finish
    if stow is not None:
        stow.stop()
    gateway.intake.close()
    drain_until = time.monotonic() + DRAIN_SECONDS
    while server.active_associations and time.monotonic() < drain_until:
        time.sleep(0.1)
    for association in server.active_associations:
        association.abort()
    stopped.set()
    forwarding.join()
    return 0
