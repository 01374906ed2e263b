"""The ``metadata.json`` document of a study (schema in ARCHITECTURE.md).

Which DICOM attribute fills which field is data (``data/metadata_map.json``): adding a field
is one line there. Values are converted to plain JSON types; an absent or empty attribute is
``null``, never a default, so a consumer can tell "not recorded" from a real value.

Instances are described through pydicom (:mod:`pacs_validator.dicom.description`); this
module assembles the plain JSON descriptions, and imports nothing of pydicom, so that an
invocation of the descriptor that describes nothing loads no DICOM reader.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from pacs_validator.dicom.data import data_document

JsonValue = str | int | float | list[Any] | None


@cache
def metadata_map() -> dict[str, Any]:
    """The field -> attribute keyword mapping, by section."""
    mapping: dict[str, Any] = data_document("metadata_map.json")
    return mapping


STUDY_SECTIONS = ("patient", "study", "equipment", "exposure", "institution")
"""Sections of ``metadata.json`` that describe the whole study (taken from its first instance)."""
LAST = 2**31
"""Sort position of an instance or series with no number."""


@dataclass(frozen=True)
class InstanceDescription:
    """What ``metadata.json`` needs from one instance, as plain JSON.

    The pipeline describes each instance once, while validation has it open, and keeps this
    until the study is assembled, so storing a study never reads its instances again.
    ``sections`` (the study-wide fields) may be dropped from all but the first instance of
    a group, since only the study's first instance provides them.
    """

    sort_key: tuple[int, str]
    series_uid: str | None
    series: dict[str, JsonValue]
    entry: dict[str, Any]
    sections: dict[str, dict[str, JsonValue]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sort_key": list(self.sort_key), "series_uid": self.series_uid,
                "series": self.series, "entry": self.entry, "sections": self.sections}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceDescription:
        number, uid = data["sort_key"]
        return cls(sort_key=(int(number), str(uid)), series_uid=data["series_uid"],
                   series=data["series"], entry=data["entry"], sections=data["sections"])

    def without_sections(self) -> InstanceDescription:
        return replace(self, sections=None)


def instance_order(number: object, sop_instance_uid: str | None) -> tuple[int, str]:
    """Where an instance goes in its series: by InstanceNumber, then SOPInstanceUID."""
    return (number if isinstance(number, int) else LAST, sop_instance_uid or "")


def _series_sort_key(series: dict[str, Any]) -> tuple[int, str]:
    number = series["number"]
    return (number if isinstance(number, int) else LAST, series["instance_uid"] or "")


def first_of(descriptions: Iterable[InstanceDescription]) -> list[InstanceDescription]:
    """``descriptions`` with the study-wide sections kept only on the first in order, the
    one that provides them: what a group of instances needs to keep for assembly."""
    ordered = sorted(descriptions, key=lambda d: d.sort_key)
    return ordered[:1] + [d.without_sections() for d in ordered[1:]]


def assemble_metadata(study_id: str | None, descriptions: Iterable[InstanceDescription],
                      previews: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The metadata document of one study from the descriptions of its instances.

    Patient, study, equipment, exposure and institution come from the first instance in
    (InstanceNumber, SOPInstanceUID) order that carries them; the study rules have already
    checked that the patient and study attributes agree across instances. An instance
    described twice (the same SOPInstanceUID uploaded twice) is listed once. ``previews``
    maps a SeriesInstanceUID to where its preview image is; a series without one has
    ``"preview": null``.
    """
    unique = {d.entry.get("sop_instance_uid") or id(d): d for d in descriptions}
    ordered = sorted(unique.values(), key=lambda d: d.sort_key)
    if not ordered:
        raise ValueError("a study has at least one instance")
    first = next(d.sections for d in ordered if d.sections is not None)
    series: dict[str | None, dict[str, Any]] = {}
    members: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for description in ordered:
        series.setdefault(description.series_uid, description.series)
        members[description.series_uid].append(description.entry)
    series_list = [{**fields, "preview": (previews or {}).get(uid) if uid else None,
                    "instances": members[uid]} for uid, fields in series.items()]
    return {
        "schema_version": metadata_map()["schema_version"],
        "study_id": study_id or first["study"]["instance_uid"],
        **{name: first[name] for name in STUDY_SECTIONS},
        "series": sorted(series_list, key=_series_sort_key),
        "counts": {"series": len(series_list), "instances": len(ordered)},
    }


def middle_instance(series: dict[str, Any]) -> dict[str, Any]:
    """The instance of a ``metadata.json`` series to preview it by: the middle one in
    InstanceNumber order (the order of ``instances``), which in a stack of slices is the
    one most likely to show the anatomy rather than its edge."""
    instances: list[dict[str, Any]] = series["instances"]
    return instances[len(instances) // 2]
