"""Build ``pacs_validator/data/iod_table.json`` from highdicom's standard tables.

Why this script exists
----------------------
highdicom ships machine-readable extracts of DICOM PS3.3 (SOP Class -> IOD,
IOD -> modules, module -> attributes) in ``highdicom/_standard/``. They are
~23 MB of JSON and highdicom itself pulls in numpy, pillow, etc. The run-time
validator only needs a tiny slice of that: for each SOP class, the top-level
Type 1 / Type 2 attributes of the modules that are Mandatory ("M") in its IOD.
This script derives that slice once, at build time, so the deployed package
needs neither highdicom nor its dependencies. The output is deterministic
(sorted keys, fixed separators), and the unit tests regenerate it and compare
against the committed file, so the data cannot silently drift from this code.

Output shape::

    {"generated_from": "highdicom <version>",
     "iods": {iod_key: [["GGGGEEEE", keyword, "1"|"2", module_key], ...]},
     "sop_classes": {sop_class_uid: iod_key}}

IODs are stored once (several SOP classes share one IOD). Attributes are
sorted by tag. ``iod_key`` and ``module_key`` are highdicom's identifiers
(e.g. ``"ct-image"``, ``"general-series"``); the tables carry no other name.

Selection rules
---------------
* only modules with usage "M" in the IOD (usage "C" and "U" are skipped,
  since whether a "C" module applies needs the condition evaluated);
* only attributes with an empty ``path`` (not nested in a sequence item);
* only types "1" and "2" (1C/2C need their condition evaluated, 3 is optional);
* an attribute listed by several mandatory modules is kept once, with the
  strictest type ("1" beats "2") and the first module (IOD order) giving it;
* tags are resolved from keywords with pydicom's data dictionary; an
  unresolvable keyword, or a group 0002 (file meta) tag, is an error;
* attributes listed in ``CONTEXT_ONLY`` are dropped (see below).

Type 1 only in context: the SR Document Content module
------------------------------------------------------
highdicom flattens *conditionally included* macros into the module's top
level and keeps the macro's own Type. In ``sr-document-content`` (mandatory in
all 23 SR-family IODs) the root content item's value-type-specific macros
(PS3.3 Table C.17-5 / C.18.x: NUM, SCOORD, SCOORD3D, TCOORD, CODE, COMPOSITE,
TABLE ...) therefore appear as unconditional top-level Type 1/2:
``ReferencedSOPSequence`` 1, ``TemporalRangeType`` 1, ``ConceptCodeSequence``
1, ``MeasuredValueSequence`` 2, ``TabulatedValuesSequence`` 1,
``GraphicData`` 1, ``GraphicType`` 1, ``ReferencedFrameOfReferenceUID`` 1.
They only apply when ``ValueType`` has the matching value, and the SR root is
always a CONTAINER (PS3.3 C.17.3), so they would be false "missing Type 1"
findings on every SR. ``ValueType`` and ``ContinuityOfContent`` (Container
Macro, applies to the root CONTAINER) are kept. Nothing in the JSON marks this
situation, so the exclusion is an explicit list; other modules may hide the
same pattern and will show up as noise when validating real files.

Observations on highdicom 0.28.2's tables (checked when this was written)
--------------------------------------------------------------------------
* ``PixelData`` is Type **1C** in the Image Pixel module (it is conditional on
  ``PixelDataProviderURL`` being absent), so it is *not* in the table even for
  image IODs. Likewise ``PlanarConfiguration``, ``PixelAspectRatio`` and the
  palette LUT attributes are 1C and are left out.
* The CT Image module re-lists Image Pixel attributes with CT-specific
  constraints (``SamplesPerPixel``, ``PhotometricInterpretation``,
  ``BitsAllocated``, ``BitsStored``, ``HighBit`` all Type 1) and adds
  ``RescaleIntercept`` / ``RescaleSlope`` as Type 1 -- so these attributes are
  attributed to ``image-pixel`` (first in IOD order) after dedupe, while
  ``RescaleIntercept``/``RescaleSlope`` come from ``ct-image``.
* CT Image Storage yields, among others: PatientName 2, PatientID 2,
  PatientBirthDate 2, PatientSex 2 (patient); StudyInstanceUID 1, StudyDate 2,
  StudyTime 2, ReferringPhysicianName 2, StudyID 2, AccessionNumber 2
  (general-study); Modality 1, SeriesInstanceUID 1, SeriesNumber 2,
  Laterality 2C->skipped (general-series); FrameOfReferenceUID 1,
  PositionReferenceIndicator 2 (frame-of-reference); Manufacturer 2
  (general-equipment); InstanceNumber 2 (general-image); PixelSpacing 1,
  ImageOrientationPatient 1, ImagePositionPatient 1 (image-plane); Rows 1,
  Columns 1, PixelRepresentation 1 ... (image-pixel); ImageType 1, KVP 2,
  AcquisitionNumber 2, RescaleIntercept 1, RescaleSlope 1 (ct-image);
  SOPClassUID 1, SOPInstanceUID 1 (sop-common).  Note PatientOrientation
  (General Image, Type 2C) and SliceThickness (Image Plane, Type 2) -- the
  latter is included, and is often absent in real-world/secondary data.
* Nine module keys referenced by ``iod_module_map.json`` have no entry in
  ``module_attribute_map.json`` (waveform presentation-state and real-time
  video/audio "current frame functional groups" modules); some of them are
  usage "M". They contribute no attributes here.
* Four IODs (real-time video endoscopic/photographic, real-time audio
  waveform, rendition selection document) are not reached from any SOP class
  UID in ``sop_class_iod_map.json`` and are therefore not emitted.
* ``module_attribute_map.json`` contains 890 attributes whose type is the
  string ``"None"`` (mostly normalized/DIMSE-service modules); they are
  ignored like Type 3.
* Overlay attributes use keywords (``OverlayRows``...) that pydicom only knows
  as repeating-group (60xx) entries; they only occur in "U"/"C" overlay modules
  so they never reach the table (the builder would fail loudly if they did).

Usage::

    python layers/tools/build_iod_table.py [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Final

from pydicom.datadict import tag_for_keyword

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT: Final = (
    REPO_ROOT / "layers" / "core" / "pacs_validator" / "data" / "iod_table.json"
)
REQUIRED_TYPES: Final = ("1", "2")  # strictest first
MANDATORY_USAGE: Final = "M"
# module key -> keywords that are Type 1/2 only inside a conditional macro
CONTEXT_ONLY: Final[Mapping[str, frozenset[str]]] = {
    "sr-document-content": frozenset(
        {
            "ConceptCodeSequence",
            "GraphicData",
            "GraphicType",
            "MeasuredValueSequence",
            "ReferencedFrameOfReferenceUID",
            "ReferencedSOPSequence",
            "TabulatedValuesSequence",
            "TemporalRangeType",
        }
    ),
}

# [tag "GGGGEEEE", keyword, type, module_key]
Row = list[str]
Table = dict[str, Any]


def load_standard(name: str) -> Any:
    """Read one of highdicom's bundled ``_standard/*.json`` files."""
    ref = resources.files("highdicom") / "_standard" / name
    with ref.open("r", encoding="utf-8") as fh:
        return json.load(fh)


def _strictness(attr_type: str) -> int:
    return REQUIRED_TYPES.index(attr_type)


def _iod_rows(
    modules: Sequence[Mapping[str, str]],
    module_attributes: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[Row]:
    best: dict[int, Row] = {}
    for module in modules:
        if module["usage"] != MANDATORY_USAGE:
            continue
        module_key = module["key"]
        context_only = CONTEXT_ONLY.get(module_key, frozenset())
        for attr in module_attributes.get(module_key, ()):
            attr_type = attr["type"]
            keyword = attr["keyword"]
            if (
                attr["path"]
                or attr_type not in REQUIRED_TYPES
                or keyword in context_only
            ):
                continue
            tag = tag_for_keyword(keyword)
            if tag is None:
                raise ValueError(
                    f"module {module_key!r}: keyword {keyword!r} unknown to pydicom"
                )
            if tag >> 16 == 0x0002:
                raise ValueError(f"module {module_key!r}: file meta tag {keyword!r}")
            current = best.get(tag)
            if current is None or _strictness(attr_type) < _strictness(current[2]):
                best[tag] = [f"{tag:08X}", keyword, attr_type, module_key]
    return [best[tag] for tag in sorted(best)]


def build_table() -> Table:
    """Return the compact conformance table as a JSON-ready dict."""
    sop_class_iod: Mapping[str, str] = load_standard("sop_class_iod_map.json")
    iod_modules: Mapping[str, Sequence[Mapping[str, str]]] = load_standard(
        "iod_module_map.json"
    )
    module_attributes: Mapping[str, Sequence[Mapping[str, Any]]] = load_standard(
        "module_attribute_map.json"
    )
    sop_classes = {
        uid: iod_key for uid, iod_key in sop_class_iod.items() if iod_key in iod_modules
    }
    iods = {
        iod_key: _iod_rows(iod_modules[iod_key], module_attributes)
        for iod_key in sorted(set(sop_classes.values()))
    }
    return {
        "generated_from": f"highdicom {metadata.version('highdicom')}",
        "iods": iods,
        "sop_classes": sop_classes,
    }


def render(table: Table) -> str:
    """Serialize deterministically: sorted keys, compact, one trailing newline."""
    return json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return write_table(build_table, DEFAULT_OUTPUT, __doc__, argv)


def write_table(build: Callable[[], Table], default_output: Path, doc: str | None,
                argv: Sequence[str] | None) -> int:
    """The command line of a table builder: ``build()`` rendered to ``--output``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--output", type=Path, default=default_output)
    args = parser.parse_args(argv)
    output: Path = args.output
    text = render(build())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output} ({len(text.encode('utf-8'))} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
