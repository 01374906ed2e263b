"""Findings for people, shared by ``validate``, ``status`` and ``upload``: errors listed,
warnings counted by rule (every finding with ``--verbose``), identical findings once with
how many there were, and the totals line a run ends with.

A study of 50 files that each lack the same Type 2C attribute is one line, ``50 x``, not
fifty: the counts say what to fix, and the list of each stays one ``-v`` away.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TextIO

from pacs_validator.cli.common import finding_line
from pacs_validator.dicom.rules import Finding, Severity

INDENT = "    "
TIMES = "\N{MULTIPLICATION SIGN}"


def merged(findings: Iterable[Finding]) -> list[tuple[int, Finding]]:
    """Each distinct finding (rule, tag and message) once, with how many times it came, in
    the order they first came."""
    counts: Counter[tuple[str, str | None, str]] = Counter()
    first: dict[tuple[str, str | None, str], Finding] = {}
    for finding in findings:
        key = (finding.rule, finding.tag, finding.message)
        counts[key] += 1
        first.setdefault(key, finding)
    return [(counts[key], finding) for key, finding in first.items()]


def counted_line(count: int, finding: Finding) -> str:
    """A finding on one line, led by its count when it came more than once."""
    return f"{count} {TIMES} {finding_line(finding)}" if count > 1 else finding_line(finding)


def warnings_by_rule(findings: Iterable[Finding]) -> list[tuple[str, int]]:
    """How many warnings of each rule, most frequent first (then by rule)."""
    counts = Counter(f.rule for f in findings if f.severity is Severity.WARNING)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def print_findings(findings: Sequence[Finding], out: TextIO, *, verbose: bool,
                   label: str = "") -> None:
    """The findings one needs to read one by one, merged: every one when ``verbose``, else
    those that are not warnings (warnings are left to :func:`print_warning_counts`).
    ``label`` leads each line (a file's name, ``study: ``)."""
    shown = findings if verbose else [f for f in findings if f.severity is not Severity.WARNING]
    for count, finding in merged(shown):
        print(f"{INDENT}{label}{counted_line(count, finding)}", file=out)


def print_warning_counts(findings: Iterable[Finding], out: TextIO) -> None:
    """One line per rule that warned: ``23 x conformance.missing-type2c``."""
    counts = warnings_by_rule(findings)
    if not counts:
        return
    print(f"{INDENT}warnings by rule (-v lists each):", file=out)
    width = len(str(counts[0][1]))
    for rule, count in counts:
        print(f"{INDENT}{INDENT}{count:>{width}} {TIMES} {rule}", file=out)


def totals_line(valid: int, invalid: int, skipped: int, studies_valid: int,
                studies_invalid: int) -> str:
    """``91 files: 31 valid, 50 invalid, 10 skipped · 7 studies: 6 valid, 1 invalid``."""
    files = counted(valid + invalid + skipped, "file", "files")
    studies = counted(studies_valid + studies_invalid, "study", "studies")
    return (f"{files}: {valid} valid, {invalid} invalid, {skipped} skipped · "
            f"{studies}: {studies_valid} valid, {studies_invalid} invalid")


def counted(count: int, one: str, many: str) -> str:
    """``1 study``, ``3 studies``."""
    return f"{count} {one if count == 1 else many}"
