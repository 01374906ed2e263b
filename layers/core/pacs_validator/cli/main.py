"""``pacs-validator``: the validation core on the command line, no AWS needed.

``validate`` judges files and the studies they form (grouped by StudyInstanceUID);
``describe`` prints the ``metadata.json`` document the pipeline would store (``--previews``
also renders a PNG per series); ``upload`` and ``status`` talk to the deployed API.
Exit codes: 0 all valid, 1 something invalid, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pacs_validator.cli import describe, status, upload, validate
from pacs_validator.cli.common import EXIT_USAGE, UsageError
from pacs_validator.dicom.config import ConfigError

COMMANDS = {"validate": validate, "describe": describe, "upload": upload, "status": status}


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, every subcommand included (also read by docs/generate.py)."""
    parser = argparse.ArgumentParser(prog="pacs-validator", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command].run(args))
    except (ConfigError, UsageError) as exc:
        print(f"pacs-validator: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
