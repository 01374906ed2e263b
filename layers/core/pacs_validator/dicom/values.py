"""Checks on attribute presence and values of one instance.

Each public ``check_*`` function is one rule family: it reads the data set, never changes
it, and reports findings that name attributes but never quote their values.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from functools import cache

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.data import data_document
from pacs_validator.dicom.parsing import (
    MEDIA_STORAGE_SOP_CLASS_UID,
    MEDIA_STORAGE_SOP_INSTANCE_UID,
    ParsedInstance,
    loaded_elements,
    walk_elements,
)
from pacs_validator.dicom.rules import Findings, Location, element_name

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
UID_MAX_LENGTH = 64
CODE_STRING = re.compile(r"^[A-Z0-9 _]*$")

MAX_VALUE_LENGTH = {
    "AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64,
    "LT": 10240, "SH": 16, "ST": 1024, "TM": 14, "UI": 64,
}
"""Characters per value (PS3.5 table 6.2-1). PN is limited per component group, below."""
PERSON_NAME_GROUP_LENGTH = 64

_VALUE_FORMATS = {
    "AS": re.compile(r"^\d{3}[DWMY]$"),
    "CS": CODE_STRING,
    "DA": re.compile(r"^\d{8}$"),
    "DS": re.compile(r"^ *[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)? *$"),
    "IS": re.compile(r"^ *[+-]?\d+ *$"),
    "TM": re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$"),
}


def _keyword_tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword  # configuration keywords are checked when loaded
    return tag


def _values(element: DataElement) -> list[str]:
    """The element's values as text (one per value multiplicity), empty values dropped."""
    value = element.value
    items = value if isinstance(value, (MultiValue, list, tuple)) else [value]
    return [text for item in items if item is not None and (text := str(item)) != ""]


def _is_empty(dataset: Dataset, keyword: str) -> bool:
    try:
        element = dataset[keyword]
    except KeyError:
        return True
    if element.value is None:
        return True
    if isinstance(element.value, (str, bytes, list, MultiValue)):
        return len(element.value) == 0 or not any(v.strip() for v in _values(element))
    return False


def _present(dataset: Dataset, keyword: str) -> DataElement | None:
    """The element when it is present and not empty."""
    return None if _is_empty(dataset, keyword) else dataset[keyword]


def check_required(dataset: Dataset, config: ValidatorConfig, findings: Findings) -> None:
    for keyword in config.required_attributes:
        if keyword not in dataset:
            findings.add("attribute.required", f"{keyword} is missing", _keyword_tag(keyword))
        elif _is_empty(dataset, keyword):
            findings.add("attribute.required", f"{keyword} is empty", _keyword_tag(keyword))


def check_single_valued(dataset: Dataset, config: ValidatorConfig, findings: Findings) -> None:
    for keyword in config.single_valued:
        element = _present(dataset, keyword)
        if element is not None and element.VM > 1:
            findings.add(
                "value.multiplicity", f"{keyword} holds {element.VM} values; one is allowed",
                element.tag,
            )


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` is not a valid UID (PS3.5 9.1), or None when it is."""
    if len(uid) > UID_MAX_LENGTH:
        return f"is longer than {UID_MAX_LENGTH} characters"
    if not UID_PATTERN.match(uid):
        if re.match(r"^[0-9]+(\.[0-9]+)*$", uid):
            return "has a component with a leading zero"
        return "is not dot-separated digits"
    return None


def check_uids(dataset: Dataset, config: ValidatorConfig, findings: Findings) -> None:
    """Identifying UIDs are errors (``value.uid``); other UI elements ``value.other-uid``."""
    identifying = {_keyword_tag(k) for k in config.identifying_uids}
    for element in walk_elements(dataset):
        if element.VR != "UI":
            continue
        rule = "value.uid" if element.tag in identifying else "value.other-uid"
        for uid in _values(element):
            problem = uid_problem(uid.rstrip("\x00 "))
            if problem:
                findings.add(rule, f"{element.keyword or 'a UID'} {problem}", element.tag)
                break


def is_real_date(text: str) -> bool:
    """True for a YYYYMMDD string naming a day that exists."""
    if not re.fullmatch(r"\d{8}", text):
        return False
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def check_dates(dataset: Dataset, config: ValidatorConfig, findings: Findings) -> None:
    """Checked dates are real days: ``value.date`` for required attributes, whose values
    identify the study, ``value.other-date`` for the rest (a warning by default, as Azure's
    DICOM service stores a file whose PatientBirthDate is malformed)."""
    for keyword in config.checked_dates:
        element = _present(dataset, keyword)
        if element is None:
            continue
        if not all(is_real_date(text.strip()) for text in _values(element)):
            rule = "value.date" if keyword in config.required_attributes else "value.other-date"
            findings.add(rule, f"{keyword} is not a real YYYYMMDD date", element.tag)


@cache
def _modality_terms() -> tuple[frozenset[str], frozenset[str]]:
    terms = data_document("modalities.json")
    return frozenset(terms["defined_terms"]), frozenset(terms["retired_terms"])


def check_modality(dataset: Dataset, config: ValidatorConfig, findings: Findings) -> None:
    element = _present(dataset, "Modality")
    if element is None:
        return
    defined, retired = _modality_terms()
    for value in _values(element):
        code = value.strip()
        if len(value) > MAX_VALUE_LENGTH["CS"] or not CODE_STRING.match(value) or not code:
            findings.add("value.modality", "Modality is not a code string of at most 16 "
                         "upper-case letters, digits, spaces or underscores", element.tag)
        elif code not in defined and code not in retired:
            findings.add("value.modality-unknown", "Modality is not a defined term", element.tag)


def check_value_representations(
    dataset: Dataset, config: ValidatorConfig, findings: Findings
) -> None:
    """Value lengths and formats of every top-level standard element, by its VR.

    Only the required attributes reject (``value.vr-length``, ``value.vr-format``); the same
    defects elsewhere are ``value.other-vr-length`` and ``value.other-vr-format``, warnings by
    default, because real scanners write over-long descriptions that every archive stores.
    """
    skipped = {_keyword_tag(k) for k in config.checked_dates} | {_keyword_tag("Modality")}
    required = {_keyword_tag(k) for k in config.required_attributes}
    for element in loaded_elements(dataset):
        if element.tag.is_private or element.VR == "SQ" or element.tag in skipped:
            continue
        texts = _texts(element)
        prefix = "value." if element.tag in required else "value.other-"
        name = element.keyword or "an element"
        if _too_long(element.VR, texts):
            findings.add(prefix + "vr-length", f"{name} is longer than VR {element.VR} allows",
                         element.tag)
        pattern = _VALUE_FORMATS.get(element.VR)
        if pattern and not all(map(pattern.match, texts)):
            findings.add(prefix + "vr-format", f"{name} does not match the format of VR "
                         f"{element.VR}", element.tag)


def check_value_widths(parsed: ParsedInstance, config: ValidatorConfig, findings: Findings
                       ) -> None:
    """Values that are no whole number of their VR's values (a US of 3 bytes), which the
    read took as empty (:class:`~pacs_validator.dicom.parsing.WrongWidth`), at any depth
    and in the file meta.

    A value length that breaks its VR, judged as :func:`check_value_representations` judges
    one: ``value.vr-length`` for a top-level required attribute (an identifying UID whose VR
    was overwritten with UL), ``value.other-vr-length`` anywhere else, a warning by default:
    the rest of the file still reads, and the element is simply empty.
    """
    required = {_keyword_tag(k) for k in config.required_attributes}
    for wrong in parsed.wrong_widths:
        top_level_required = wrong.path is None and wrong.tag in required
        rule = "value.vr-length" if top_level_required else "value.other-vr-length"
        findings.add(rule, f"{wrong.path or element_name(wrong.tag)} holds {wrong.length} "
                     f"bytes, not a whole number of {wrong.width}-byte {wrong.vr} values",
                     wrong.tag, Location(path=wrong.path))


def _texts(element: DataElement) -> list[str]:
    """The element's text values; none for binary or numeric values (no length limit)."""
    if not isinstance(element.value, (str, PersonName, MultiValue, list)):
        return []  # PersonName is not a str subclass
    return _values(element)


def _too_long(vr: str, texts: Iterable[str]) -> bool:
    if vr == "PN":
        return any(len(group) > PERSON_NAME_GROUP_LENGTH for t in texts for group in t.split("="))
    limit = MAX_VALUE_LENGTH.get(vr)
    return limit is not None and any(len(t) > limit for t in texts)


def check_file_meta_agreement(
    parsed: ParsedInstance, dataset: Dataset, findings: Findings
) -> None:
    """The file meta's SOP class / instance UIDs must name the data set they wrap."""
    pairs = (
        (MEDIA_STORAGE_SOP_CLASS_UID, "SOPClassUID", "meta.sop-class-mismatch"),
        (MEDIA_STORAGE_SOP_INSTANCE_UID, "SOPInstanceUID", "meta.sop-instance-mismatch"),
    )
    for meta_tag, keyword, rule in pairs:
        meta_value = parsed.meta.get(meta_tag)
        element = _present(dataset, keyword)
        if meta_value is None or element is None:
            continue
        if str(element.value).rstrip("\x00 ") != meta_value:
            findings.add(rule, f"{keyword} differs from the file meta information", element.tag)


