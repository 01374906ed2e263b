"""The answer a sender gets for one instance: a DIMSE status and an Error Comment that
names the rule, never a value.

The core's verdicts map onto PS3.4's C-STORE statuses (Annex B.2.3) by what happened:

- 400, not a readable DICOM data set -> 0xC000 "cannot understand";
- 422, a missing or malformed identifying attribute, pixel data inconsistent -> 0xA900
  "data set does not match SOP class";
- 413, over one of the gate's caps, or the spool without the room to keep it
  (``gateway.spool-full``) -> 0xA700 "out of resources", which is true there, and only
  there;
- 500, the gate's own failure -> 0x0110 "processing failure";
- valid with warnings -> 0xB007 "data set does not match SOP class" (warning);
- valid -> 0x0000.

Orthanc answers every refused instance with 0xA700 and RSNA CTP answers success before its
filters run; a sender reading these statuses can tell a file to fix from a full disk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pacs_validator.dicom.rules import Finding, Severity
from pacs_validator.dicom.validation import InstanceResult

SUCCESS = 0x0000
WARNING_DOES_NOT_MATCH = 0xB007
FAILURE_DOES_NOT_MATCH = 0xA900
FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_OUT_OF_RESOURCES = 0xA700
FAILURE_PROCESSING = 0x0110
FAILURE_DUPLICATE = 0x0111
"""PS3.7 C.4: Duplicate SOP Instance, for an instance the spool holds with other bytes."""

FAILURES = {400: FAILURE_CANNOT_UNDERSTAND, 422: FAILURE_DOES_NOT_MATCH,
            413: FAILURE_OUT_OF_RESOURCES, 500: FAILURE_PROCESSING}
"""The core's verdict status -> the C-STORE failure status that says the same."""
SPOOL_FULL = "gateway.spool-full"
"""The Error Comment of an instance the spool has no room for: the gateway's own answer,
not a finding of the rules (it says nothing of the instance)."""
ERROR_COMMENT_CHARS = 64
"""Error Comment (0000,0902) is an LO: 64 characters at most."""


@dataclass(frozen=True)
class Answer:
    """What the sender is told about one instance."""

    status: int
    comment: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status in (SUCCESS, WARNING_DOES_NOT_MATCH)


def comment(findings: tuple[Finding, ...], severity: Severity) -> str | None:
    """The rule ids of ``findings`` of ``severity``, the most frequent first, as many as fit
    an Error Comment, then ``+N`` for the N rules left out."""
    rules = [rule for rule, _ in
             Counter(f.rule for f in findings if f.severity is severity).most_common()]
    shown: list[str] = []
    for rule in rules:
        left_out = len(rules) - len(shown) - 1
        if len(" ".join([*shown, rule]) + (f" +{left_out}" if left_out else "")) \
                > ERROR_COMMENT_CHARS:
            break
        shown.append(rule)
    if rules and not shown:
        return rules[0][:ERROR_COMMENT_CHARS]
    left_out = len(rules) - len(shown)
    return " ".join(shown) + (f" +{left_out}" if left_out else "") if rules else None


def answer_for(result: InstanceResult) -> Answer:
    """The status and Error Comment for the core's verdict on one instance."""
    if result.valid:
        warned = comment(result.findings, Severity.WARNING)
        return Answer(WARNING_DOES_NOT_MATCH, warned) if warned else Answer(SUCCESS)
    return Answer(FAILURES.get(result.status, FAILURE_PROCESSING),
                  comment(result.findings, Severity.ERROR))
