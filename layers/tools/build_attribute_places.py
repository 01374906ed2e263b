"""Build ``pacs_validator/data/attribute_places.json`` from highdicom's standard tables.

Why this script exists
----------------------
dciodvfy names a missing attribute by keyword and module (``Element=<CodeMeaning>
Module=<BasicCodeSequenceMacro>``), never by where in the data set it is missing. To give a
finding a path (``ProcedureCodeSequence[2]/CodeMeaning``), the validator looks for the
sequence items that could hold the attribute and lack it; which sequences can hold which
attribute is what this table says. It also says which top-level attributes belong to which
information entity (Patient, Study, Series, Equipment, Frame of Reference), for the study-level
check that instances of one entity agree, as dcentvfy does.

Both come from highdicom's extracts of DICOM PS3.3 (``highdicom/_standard/``, ~23 MB), derived
once here so the deployed package needs neither highdicom nor those files. The output is
deterministic, and a unit test regenerates it and compares.

Output shape::

    {"generated_from": "highdicom <version>",
     "parents": {keyword: [sequence keyword, ...]},   # sequences whose items may hold it
     "top_level": [keyword, ...],                      # attributes a module lists at the top
     "entities": {entity: [keyword, ...]}}             # top-level, not sequences, not UIDs

An attribute listed by modules of several entities is given to the first of ``ENTITIES``.

Usage::

    python layers/tools/build_attribute_places.py [--output PATH]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from build_iod_table import load_standard, write_table
from pydicom.datadict import dictionary_VR, tag_for_keyword

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT: Final = (
    REPO_ROOT / "layers" / "core" / "pacs_validator" / "data" / "attribute_places.json"
)
ENTITIES: Final = ("Patient", "Study", "Series", "Equipment", "Frame of Reference")
"""The entities whose attributes must agree across the instances that share them."""


def _entity_attribute(keyword: str) -> bool:
    """Attributes compared across instances: plain values, not the UIDs that name entities."""
    tag = tag_for_keyword(keyword)
    return tag is not None and tag >> 16 != 0x0002 and dictionary_VR(tag) not in ("SQ", "UI")


def build_places() -> dict[str, Any]:
    """Return the table as a JSON-ready dict."""
    iod_modules: Mapping[str, Sequence[Mapping[str, str]]] = load_standard(
        "iod_module_map.json")
    module_attributes: Mapping[str, Sequence[Mapping[str, Any]]] = load_standard(
        "module_attribute_map.json")
    parents: dict[str, set[str]] = defaultdict(set)
    top_level: set[str] = set()
    for rows in module_attributes.values():
        for row in rows:
            if row["path"]:
                parents[row["keyword"]].add(row["path"][-1])
            else:
                top_level.add(row["keyword"])
    module_entity: dict[str, str] = {}
    for modules in iod_modules.values():
        for module in modules:
            if module["ie"] in ENTITIES:
                module_entity.setdefault(module["key"], module["ie"])
    entity_of: dict[str, str] = {}
    for entity in ENTITIES:
        for module_key, module_ie in sorted(module_entity.items()):
            if module_ie != entity:
                continue
            for row in module_attributes.get(module_key, ()):
                if not row["path"] and _entity_attribute(row["keyword"]):
                    entity_of.setdefault(row["keyword"], entity)
    entities = {entity: sorted(k for k, e in entity_of.items() if e == entity)
                for entity in ENTITIES}
    return {
        "generated_from": f"highdicom {metadata.version('highdicom')}",
        "parents": {keyword: sorted(seqs) for keyword, seqs in sorted(parents.items())},
        "top_level": sorted(top_level),
        "entities": entities,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return write_table(build_places, DEFAULT_OUTPUT, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
