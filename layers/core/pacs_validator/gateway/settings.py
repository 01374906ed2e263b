"""The options of ``gateway serve``: the command line's, over those of a config file
(``--config FILE``), over the defaults.

The file is a JSON object whose keys are the long options' names with underscores
(``ae_title``, ``allow_ae``, ``commit_to``...), so that a server's unit file need only name
it; ``validator`` holds the rules' configuration overrides inline, as ``validate --config``
reads them from a file. Relative paths in it are relative to the file's folder, not to
wherever the service happens to start.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from pacs_validator.gateway.http_body import DEFAULT_MAX_BYTES
from pacs_validator.gateway.stow import DEFAULT_MAX_CONNECTIONS

DEFAULTS: dict[str, Any] = {
    "spool": None, "ae_title": "PACSVALIDATOR", "port": 11112, "host": "127.0.0.1",
    "allow_ae": [], "stable_seconds": 60.0, "api": None, "commit_to": [], "tls_cert": None,
    "tls_key": None, "tls_client_ca": None, "max_pdu": 16382, "max_associations": 10,
    "http_port": None, "stow_token_file": None, "stow_max_bytes": DEFAULT_MAX_BYTES,
    "stow_max_connections": DEFAULT_MAX_CONNECTIONS, "judges": os.cpu_count() or 1,
    "validator_config": None,
}
"""Every option of ``gateway serve`` (but ``--config``) and its default."""
PATHS = ("spool", "tls_cert", "tls_key", "tls_client_ca", "stow_token_file",
         "validator_config")
LISTS = ("allow_ae", "commit_to")
NUMBERS = {"port": int, "max_pdu": int, "max_associations": int, "stable_seconds": float,
           "http_port": int, "stow_max_bytes": int, "stow_max_connections": int,
           "judges": int}
INLINE_VALIDATOR = "validator"
"""The config file's key for the rules' overrides, given inline."""


class SettingsError(ValueError):
    """A config file or option that cannot be used; its message says which and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``; the other options are added by the command with default None, so that
    what the command line did not give can be told from what it did."""
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="a JSON file of these options (keys: their names with "
                             "underscores; 'validator': the rules' overrides); the command "
                             "line's win")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Every option: the command line's, else the config file's, else its default; and the
    validator's inline overrides (None without them)."""
    document = read_file(args.config) if args.config else {}
    inline = document.pop(INLINE_VALIDATOR, None)
    if inline is not None and not isinstance(inline, dict):
        raise SettingsError(f"{args.config}: '{INLINE_VALIDATOR}' must be a JSON object")
    unknown = sorted(set(document) - set(DEFAULTS))
    if unknown:
        raise SettingsError(f"{args.config}: unknown option(s) {', '.join(unknown)}")
    values = {}
    for name, default in DEFAULTS.items():
        given = getattr(args, name)
        if given is not None:
            values[name] = given
        elif name in document:
            values[name] = from_file(name, document[name], args.config.parent)
        else:
            values[name] = default
    if values["spool"] is None:
        raise SettingsError("no spool: give --spool DIR or 'spool' in the config file")
    values[INLINE_VALIDATOR] = inline
    return values


def read_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SettingsError(f"cannot read {path}: {error}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: the config file must hold a JSON object")
    return document


def from_file(name: str, value: Any, folder: Path) -> Any:
    """A config file's value for option ``name``, checked and typed as the option's."""
    if name in LISTS:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"config file: '{name}' must be a list of strings")
        return value
    if name in NUMBERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"config file: '{name}' must be a number")
        return NUMBERS[name](value)
    if not isinstance(value, str):
        raise SettingsError(f"config file: '{name}' must be a string")
    return folder / value if name in PATHS else value
