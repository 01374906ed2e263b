"""The ``metadata.json`` document of a study (schema in ARCHITECTURE.md).

Which DICOM attribute fills which field is data (``data/metadata_map.json``): adding a field
is one line there. Values are converted to plain JSON types; an absent or empty attribute is
``null``, never a default, so a consumer can tell "not recorded" from a real value.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, DSdecimal, DSfloat, PersonName

from pacs_validator.dicom.data import data_document
from pacs_validator.dicom.parsing import ParsedInstance
from pacs_validator.dicom.structure import PixelDataElement
from pacs_validator.dicom.validation import InstanceResult

JsonValue = str | int | float | list[Any] | None
BULK_DATA_THRESHOLD = 1024
"""Binary values larger than this many bytes go into the DICOM JSON sidecar as references."""


@dataclass(frozen=True)
class DescribedInstance:
    """One instance to describe: its attributes and the facts only the file knows."""

    dataset: Dataset
    size: int
    sha256: str
    transfer_syntax: str | None
    pixel_data: PixelDataElement | None
    """The pixel data element as scanned (never loaded); None when there is none."""
    key: str | None = None
    """Where the pipeline stored the instance (an S3 key); None outside the pipeline."""

    @classmethod
    def of(cls, result: InstanceResult, parsed: ParsedInstance, key: str | None
           ) -> DescribedInstance | None:
        """The instance as validation read it; None when it had no readable data set."""
        if parsed.dataset is None:
            return None
        return cls(
            dataset=parsed.dataset,
            size=result.size,
            sha256=result.sha256,
            transfer_syntax=result.summary.transfer_syntax,
            pixel_data=parsed.pixel_data,
            key=key,
        )


@cache
def metadata_map() -> dict[str, Any]:
    """The field -> attribute keyword mapping, by section."""
    mapping: dict[str, Any] = data_document("metadata_map.json")
    return mapping


def json_value(value: object) -> JsonValue:
    """A DICOM value as plain JSON: numbers stay numbers, names and strings become text."""
    if value is None or value == "":
        return None
    if isinstance(value, (MultiValue, list, tuple)):
        items = [json_value(v) for v in value]
        return items or None
    if isinstance(value, IS):
        return int(value)
    if isinstance(value, (DSfloat, DSdecimal, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, int):
        return value
    if isinstance(value, PersonName):
        return str(value) or None
    if isinstance(value, bytes):
        return None  # binary values are not metadata
    return str(value).rstrip("\x00 ") or None


def _section(dataset: Dataset, section: str) -> dict[str, JsonValue]:
    fields: dict[str, str] = metadata_map()[section]
    return {name: json_value(dataset.get(keyword)) for name, keyword in fields.items()}


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

    def stored_at(self, key: str | None) -> InstanceDescription:
        """The same description, its instance stored at ``key``."""
        return replace(self, entry={**self.entry, "key": key})

    def without_sections(self) -> InstanceDescription:
        return replace(self, sections=None)


def instance_order(number: object, sop_instance_uid: str | None) -> tuple[int, str]:
    """Where an instance goes in its series: by InstanceNumber, then SOPInstanceUID."""
    return (number if isinstance(number, int) else LAST, sop_instance_uid or "")


def _sort_key(dataset: Dataset) -> tuple[int, str]:
    return instance_order(json_value(dataset.get("InstanceNumber")),
                          str(dataset.get("SOPInstanceUID", "")))


def _series_sort_key(series: dict[str, Any]) -> tuple[int, str]:
    number = series["number"]
    return (number if isinstance(number, int) else LAST, series["instance_uid"] or "")


def _instance_entry(instance: DescribedInstance) -> dict[str, Any]:
    entry: dict[str, Any] = _section(instance.dataset, "instance")
    if entry["frames"] is None and instance.pixel_data is not None:
        entry["frames"] = 1  # NumberOfFrames absent means a single frame (PS3.3 C.7.6.6)
    entry.update(
        transfer_syntax=instance.transfer_syntax,
        size=instance.size,
        sha256=instance.sha256,
        key=instance.key,
    )
    return entry


def describe(instance: DescribedInstance) -> InstanceDescription:
    """The metadata of one instance, ready to be kept and assembled later."""
    dataset = instance.dataset
    uid = json_value(dataset.get("SeriesInstanceUID"))
    return InstanceDescription(
        sort_key=_sort_key(dataset),
        series_uid=uid if isinstance(uid, str) else None,
        series=_section(dataset, "series"),
        entry=_instance_entry(instance),
        sections={name: _section(dataset, name) for name in STUDY_SECTIONS},
    )


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


def build_metadata(study_id: str | None, instances: Sequence[DescribedInstance]) -> dict[str, Any]:
    """The metadata document of one study whose instances are all at hand."""
    return assemble_metadata(study_id, [describe(instance) for instance in instances])


def middle_instance(series: dict[str, Any]) -> dict[str, Any]:
    """The instance of a ``metadata.json`` series to preview it by: the middle one in
    InstanceNumber order (the order of ``instances``), which in a stack of slices is the
    one most likely to show the anatomy rather than its edge."""
    instances: list[dict[str, Any]] = series["instances"]
    return instances[len(instances) // 2]


def with_bulk_data_uri(document: Any, uri: str) -> Any:
    """A DICOM JSON document whose BulkDataURIs (``#<tag>`` fragments, as
    :func:`dicom_json` writes them with an empty ``bulk_data_uri``) point into ``uri``."""
    if isinstance(document, dict):
        return {key: (uri + value if key == "BulkDataURI" and isinstance(value, str)
                      else with_bulk_data_uri(value, uri))
                for key, value in document.items()}
    if isinstance(document, list):
        return [with_bulk_data_uri(value, uri) for value in document]
    return document


def dicom_json(
    instance: DescribedInstance, bulk_data_uri: str, threshold: int = BULK_DATA_THRESHOLD
) -> dict[str, Any]:
    """The instance's DICOM JSON model (PS3.18 F.2), with binary values over ``threshold``
    bytes, and the pixel data, given as BulkDataURIs (``<bulk_data_uri>#<tag>``).

    Large numeric arrays stay references, so the sidecar stays small and a consumer fetches
    bulk data from the stored instance only when it needs it. Call it while the instance's
    file is still readable: values larger than the read's ``defer_size`` are read from it.
    """

    def reference(element: DataElement) -> str:
        return f"{bulk_data_uri}#{element.tag:08X}"

    document: dict[str, Any] = instance.dataset.to_json_dict(
        bulk_data_threshold=threshold, bulk_data_element_handler=reference
    )
    pixel = instance.pixel_data
    if pixel is not None:
        document[f"{pixel.tag:08X}"] = {"vr": pixel.vr,
                                        "BulkDataURI": f"{bulk_data_uri}#{pixel.tag:08X}"}
    return document
