#!/usr/bin/env python3
"""The docs' generated tables, written from their sources of truth.

Why: a table written by hand drifts as soon as someone adds a parameter, a rule or an
option. Each table below is copied from the one place that defines it, between two markers
in its page, and `--check` (run by the unit tests) fails when a committed page is stale:

  parameters   docs/configuration.md   from template.yaml's Parameters
  rules        docs/rules.md           from layers/core/pacs_validator/data/rules.json
  cli          docs/cli.md             from the command line's argparse parser

Usage: .venv/bin/python docs/generate.py [--check] [--root DIR]
  without --check: rewrite every stale table in place.
Needs the dev extra: cfn-lint (its YAML decoder reads the template's short-form tags) and the
pacs_validator package.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

from pacs_validator.cli.main import build_parser

REPO = Path(__file__).resolve().parent.parent
REGENERATE = ".venv/bin/python docs/generate.py"
USAGE_WIDTH = 88


def start_marker(name: str) -> str:
    return f"<!-- generated:{name}:start ({REGENERATE}) -->"


def end_marker(name: str) -> str:
    return f"<!-- generated:{name}:end -->"


def code(value: object) -> str:
    """A value as Markdown code; the empty string is shown as such, not as nothing."""
    return f"`{value}`" if str(value) != "" else '`""` (empty)'


def cell(text: str) -> str:
    """Text fit for one Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


# --- parameters: template.yaml ----------------------------------------------------------

def load_parameters(template_text: str) -> dict[str, dict[str, Any]]:
    """The template's Parameters, in the template's order (the order they are grouped in)."""
    template, errors = decode_str(template_text)
    if errors or template is None:
        raise ValueError(f"template.yaml does not parse: {errors}")
    return dict(template.get("Parameters", {}))


def constraints(spec: Mapping[str, Any]) -> str:
    """What CloudFormation accepts for the parameter, from its type and constraint keys."""
    parts = [spec["Type"]]
    if "AllowedValues" in spec:
        parts.append("one of " + ", ".join(code(v) for v in spec["AllowedValues"]))
    if "AllowedPattern" in spec:
        parts.append(f"matching {code(spec['AllowedPattern'])}")
    if "MinValue" in spec:
        parts.append(f"≥ {spec['MinValue']}")
    if "MaxValue" in spec:
        parts.append(f"≤ {spec['MaxValue']}")
    return "; ".join(parts)


def parameter_table(parameters: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per parameter; a parameter without a Description fails, so that a new
    parameter cannot reach the docs unexplained."""
    missing = [name for name, spec in parameters.items() if not spec.get("Description")]
    if missing:
        raise ValueError(f"parameters without a Description in template.yaml: {missing}")
    rows = ["| parameter | default | allowed | what it changes, and when to change it |",
            "| --- | --- | --- | --- |"]
    rows += [f"| `{name}` | {code(spec.get('Default', ''))} | {cell(constraints(spec))} "
             f"| {cell(spec['Description'])} |" for name, spec in parameters.items()]
    return "\n".join(rows)


def parameters_from(root: Path) -> str:
    return parameter_table(load_parameters((root / "template.yaml").read_text("utf-8")))


# --- rules: data/rules.json -------------------------------------------------------------

RULES_JSON = Path("layers/core/pacs_validator/data/rules.json")


def rule_table(catalogue: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per rule, in catalogue order: its id, default severity and status, and what
    it means (the catalogue's title)."""
    rows = ["| rule | default | status | what |", "| --- | --- | --- | --- |"]
    rows += [f"| `{rule_id}` | {entry['severity']} | {entry['status']} | {cell(entry['title'])} |"
             for rule_id, entry in catalogue.items()]
    return "\n".join(rows)


def rules_from(root: Path) -> str:
    return rule_table(json.loads((root / RULES_JSON).read_text("utf-8")))


# --- cli: the argparse parser -----------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _argument(action: argparse.Action) -> str:
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    if not action.option_strings:
        return f"`{metavar}…`" if action.nargs in ("+", "*") else f"`{metavar}`"
    takes_value = action.nargs != 0
    return ", ".join(f"`{option} {metavar}`" if takes_value else f"`{option}`"
                     for option in action.option_strings)


def _unexplained(action: argparse.Action) -> str:
    """What the table says of an argument the parser gives no help for."""
    if action.option_strings:
        return ""
    return "one or more, required" if action.nargs == "+" else "required"


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """Each subcommand: what it does, its usage line and a table of its arguments."""
    parts: list[str] = []
    for name, help_text, sub in _subcommands(parser):
        parts += [f"### `{parser.prog} {name}`", "", f"{help_text[:1].upper()}{help_text[1:]}.",
                  "", "```", _usage(sub), "```", "", "| argument | what |", "| --- | --- |"]
        parts += [f"| {_argument(action)} | {cell(action.help or _unexplained(action))} |"
                  for action in sub._actions if not isinstance(action, argparse._HelpAction)]
        parts.append("")
    return "\n".join(parts).rstrip()


def cli_from(_root: Path) -> str:
    return cli_reference(build_parser())


# --- the pages --------------------------------------------------------------------------

@dataclass(frozen=True)
class Generated:
    """One generated table: its marker name, its page and how it is made."""

    name: str
    page: Path
    make: Callable[[Path], str]


GENERATED = (
    Generated("parameters", Path("docs/configuration.md"), parameters_from),
    Generated("rules", Path("docs/rules.md"), rules_from),
    Generated("cli", Path("docs/cli.md"), cli_from),
)


def with_block(page: str, name: str, generated: str) -> str:
    """The page with the text between `name`'s markers replaced by `generated`."""
    head, start, rest = page.partition(start_marker(name))
    _, end, tail = rest.partition(end_marker(name))
    if not (start and end):
        raise ValueError(f"the page lacks the markers {start_marker(name)!r} … "
                         f"{end_marker(name)!r}")
    return f"{head}{start_marker(name)}\n{generated}\n{end_marker(name)}{tail}"


def stale(root: Path) -> dict[Path, str]:
    """Each page whose generated tables differ from their sources, with its wanted text."""
    wanted: dict[Path, str] = {}
    for item in GENERATED:
        path = root / item.page
        page = wanted[path] if path in wanted else path.read_text("utf-8")
        wanted[path] = with_block(page, item.name, item.make(root))
    return {path: text for path, text in wanted.items() if text != path.read_text("utf-8")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a generated table differs from its source")
    parser.add_argument("--root", type=Path, default=REPO,
                        help="the repository whose sources and pages to read (default: this one)")
    args = parser.parse_args(argv)
    pages = stale(args.root)
    for path, text in pages.items():
        page = path.relative_to(args.root)
        if args.check:
            print(f"{page} is out of date with its source: run {REGENERATE}", file=sys.stderr)
        else:
            path.write_text(text, "utf-8")
            print(f"{page}: generated tables rewritten", file=sys.stderr)
    return 1 if args.check and pages else 0


if __name__ == "__main__":
    sys.exit(main())
