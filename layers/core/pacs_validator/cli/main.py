"""``pacs-validator``: the validation core on the command line, no AWS needed.

``validate`` judges files and the studies they form (grouped by StudyInstanceUID);
``describe`` prints the ``metadata.json`` document the pipeline would store (``--previews``
also renders a PNG per series); ``upload``, ``status`` and ``list`` talk to the deployed API.
Exit codes: 0 all valid, 1 something invalid, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from pacs_validator.cli import describe, listing, status, upload, validate
from pacs_validator.cli.common import EXIT_BROKEN_PIPE, EXIT_USAGE, UsageError
from pacs_validator.dicom.config import ConfigError
from pacs_validator.gateway import command as gateway

COMMANDS = {"validate": validate, "describe": describe, "upload": upload, "status": status,
            "list": listing, "gateway": gateway}
DESCRIPTION = ("Validate DICOM files and studies on this machine (validate, describe), "
               "send them to the deployed pipeline and read its verdict (upload, status, list), "
               "or take them from DICOM senders (gateway). "
               "Exit codes: 0 all valid, 1 something invalid, 2 usage error.")
"""The help's own words: the module docstring is written for the API docs, in markup."""
DISTRIBUTION = "pacs-validator"


def installed_version() -> str:
    """The installed distribution's version ("unknown" when run from a bare checkout)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, every subcommand included (also read by docs/generate.py)."""
    parser = argparse.ArgumentParser(prog="pacs-validator", description=DESCRIPTION)
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. A reader that stops early (``| head``) ends the run quietly:
    what is left to print goes nowhere, without a traceback."""
    args = build_parser().parse_args(argv)
    try:
        code = int(COMMANDS[args.command].run(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except (ConfigError, UsageError) as exc:
        print(f"pacs-validator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
