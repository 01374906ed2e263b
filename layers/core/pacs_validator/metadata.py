"""The ``metadata.json`` document of a study (schema in ARCHITECTURE.md).

Which DICOM attribute fills which field is data (``data/metadata_map.json``): adding a field
is one line there. Values are converted to plain JSON types; an absent or empty attribute is
``null``, never a default, so a consumer can tell "not recorded" from a real value.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, DSdecimal, DSfloat, PersonName

from pacs_validator.parsing import ParsedInstance, PixelDataElement
from pacs_validator.validation import InstanceResult

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
    text = resources.files("pacs_validator").joinpath("data/metadata_map.json").read_text("utf-8")
    mapping: dict[str, Any] = json.loads(text)
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


def _sort_key(instance: DescribedInstance) -> tuple[int, str]:
    number = json_value(instance.dataset.get("InstanceNumber"))
    uid = str(instance.dataset.get("SOPInstanceUID", ""))
    return (number if isinstance(number, int) else 2**31, uid)


def _series_sort_key(series: dict[str, Any]) -> tuple[int, str]:
    number = series["number"]
    return (number if isinstance(number, int) else 2**31, series["instance_uid"] or "")


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


def build_metadata(study_id: str | None, instances: Sequence[DescribedInstance]) -> dict[str, Any]:
    """The metadata document of one study.

    Patient, study, equipment, exposure and institution come from the first instance in
    (InstanceNumber, SOPInstanceUID) order; the study rules have already checked that the
    patient and study attributes agree across instances.
    """
    if not instances:
        raise ValueError("a study has at least one instance")
    ordered = sorted(instances, key=_sort_key)
    first = ordered[0].dataset
    series: dict[str | None, dict[str, Any]] = {}
    members: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for instance in ordered:
        uid = json_value(instance.dataset.get("SeriesInstanceUID"))
        series_uid = uid if isinstance(uid, str) else None
        series.setdefault(series_uid, _section(instance.dataset, "series"))
        members[series_uid].append(_instance_entry(instance))
    series_list = [{**fields, "instances": members[uid]} for uid, fields in series.items()]
    study = _section(first, "study")
    return {
        "schema_version": metadata_map()["schema_version"],
        "study_id": study_id or study["instance_uid"],
        "patient": _section(first, "patient"),
        "study": study,
        "equipment": _section(first, "equipment"),
        "exposure": _section(first, "exposure"),
        "institution": _section(first, "institution"),
        "series": sorted(series_list, key=_series_sort_key),
        "counts": {"series": len(series_list), "instances": len(ordered)},
    }



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
