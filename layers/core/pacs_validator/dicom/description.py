"""One instance described from its data set: its fields of ``metadata.json`` and its DICOM
JSON, while validation has it open.

The values are read through pydicom; what is kept (an :class:`InstanceDescription`) is plain
JSON, which :mod:`pacs_validator.dicom.metadata` assembles without pydicom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, DSdecimal, DSfloat, PersonName

from pacs_validator.dicom.metadata import (
    STUDY_SECTIONS,
    InstanceDescription,
    JsonValue,
    assemble_metadata,
    instance_order,
    metadata_map,
)
from pacs_validator.dicom.parsing import ParsedInstance
from pacs_validator.dicom.structure import PixelDataElement
from pacs_validator.dicom.validation import InstanceResult

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


def _sort_key(dataset: Dataset) -> tuple[int, str]:
    return instance_order(json_value(dataset.get("InstanceNumber")),
                          str(dataset.get("SOPInstanceUID", "")))


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


def build_metadata(study_id: str | None, instances: Sequence[DescribedInstance]) -> dict[str, Any]:
    """The metadata document of one study whose instances are all at hand."""
    return assemble_metadata(study_id, [describe(instance) for instance in instances])


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
