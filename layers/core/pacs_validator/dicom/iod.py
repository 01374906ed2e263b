"""IOD conformance table: mandatory top-level attributes per SOP Class.

The data lives in ``pacs_validator/data/iod_table.json``, generated at build
time by ``layers/tools/build_iod_table.py`` from highdicom's copy of DICOM
PS3.3, so this module needs neither highdicom nor any non-stdlib package.

For each SOP Class UID the table lists the attributes that are Type 1 or 2,
not nested in a sequence, in the modules whose usage is "M" in the IOD.
Conditional (1C/2C) attributes and "C"/"U" modules are not included.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydicom.dataset import Dataset

from pacs_validator.dicom.data import data_document
from pacs_validator.dicom.rules import Findings

__all__ = ["IodAttribute", "check_iod", "iod_name", "mandatory_attributes"]


@dataclass(frozen=True)
class IodAttribute:
    """One mandatory top-level attribute of an IOD."""

    tag: int  # e.g. 0x00100020
    keyword: str
    type: str  # "1" or "2"
    module: str  # highdicom module key, e.g. "general-study"


@dataclass(frozen=True)
class _Table:
    sop_classes: dict[str, str]
    iods: dict[str, tuple[IodAttribute, ...]]


@cache
def _table() -> _Table:
    raw: dict[str, Any] = data_document("iod_table.json")
    iods = {
        iod_key: tuple(
            IodAttribute(tag=int(tag, 16), keyword=keyword, type=type_, module=module)
            for tag, keyword, type_, module in rows
        )
        for iod_key, rows in raw["iods"].items()
    }
    return _Table(sop_classes=dict(raw["sop_classes"]), iods=iods)


def iod_name(sop_class_uid: str) -> str | None:
    """IOD key (e.g. ``"ct-image"``) for a SOP Class UID, or None if unknown."""
    return _table().sop_classes.get(sop_class_uid)


def mandatory_attributes(sop_class_uid: str) -> tuple[IodAttribute, ...]:
    """Top-level Type 1/2 attributes of the IOD's mandatory modules, by tag.

    Returns an empty tuple for an unknown SOP Class UID.
    """
    table = _table()
    iod_key = table.sop_classes.get(sop_class_uid)
    if iod_key is None:
        return ()
    return table.iods.get(iod_key, ())


def check_iod(dataset: Dataset, skip: Collection[str], findings: Findings) -> None:
    """IOD conformance: Type 1 attributes present and non-empty, Type 2 present.

    ``skip`` names attributes another rule already judges (the required attributes), so one
    defect is reported once.
    """
    sop_class = dataset.get("SOPClassUID")
    if not sop_class:
        return
    for attribute in mandatory_attributes(str(sop_class)):
        if attribute.keyword in skip:
            continue
        element = dataset.get(attribute.tag)  # a DataElement: keyed by tag, not keyword
        if element is None:
            rule = "iod.type1" if attribute.type == "1" else "iod.type2"
            findings.add(rule, f"{attribute.keyword} (module {attribute.module}) is missing",
                         attribute.tag)
        elif attribute.type == "1" and (element.value is None or element.value == ""
                                        or element.VM == 0):
            findings.add("iod.type1", f"{attribute.keyword} (module {attribute.module}) is empty",
                         attribute.tag)
