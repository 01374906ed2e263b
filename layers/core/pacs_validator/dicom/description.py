"""One instance described from its data set: its fields of ``metadata.json`` and its DICOM
JSON, from the data set validation read (the command line) or read again from the head of
the validated bytes (storing, see :func:`described_again`).

The values are read through pydicom; what is kept (an :class:`InstanceDescription`) is plain
JSON, which :mod:`pacs_validator.dicom.metadata` assembles without pydicom.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, DSdecimal, DSfloat, PersonName

from pacs_validator.dicom.config import ValidatorConfig
from pacs_validator.dicom.metadata import (
    STUDY_SECTIONS,
    InstanceDescription,
    JsonValue,
    assemble_metadata,
    instance_order,
    metadata_map,
)
from pacs_validator.dicom.parsing import (
    ParsedInstance,
    deferred_elements,
    read_head,
    read_instance,
)
from pacs_validator.dicom.rules import Findings
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


def head_of(parsed: ParsedInstance) -> dict[str, Any] | None:
    """Where storing finds a valid file's data set again (:func:`described_again`): the
    length of its head (its bytes up to the pixel data's value; when it has no pixel data,
    up to its end or its trailing padding) and the pixel data element's tag and VR. None
    for a deflated file, whose data set is only read from the whole file, inflated."""
    syntax = parsed.transfer_syntax
    if parsed.dataset is None or syntax is None or syntax.is_deflated:
        return None
    pixel = parsed.pixel_data
    if pixel is None:
        return {"bytes": parsed.padding_start or parsed.size}
    return {"bytes": pixel.value_offset, "pixel_tag": pixel.tag, "pixel_vr": pixel.vr}


def described_again(path: str | os.PathLike[str], head: Mapping[str, Any] | None, *,
                    size: int, sha256: str, transfer_syntax: str | None,
                    config: ValidatorConfig, key: str) -> DescribedInstance:
    """A valid instance, stored at ``key``, described from the bytes that were validated:
    ``path`` holds their head as :func:`head_of` measured it, or the whole file when
    ``head`` is None (a deflated file, or one recorded before heads were). The data set
    reads as validation read it; ``transfer_syntax`` is the one validation recorded, or
    None to take the file's.

    Storing describes each instance so, rather than keeping a description made at
    validation: a ranged read of the validated version instead of a write and a read of a
    description per instance, and one copy fewer of its patient values in ``work/``. Call
    :func:`describe` and :func:`dicom_json` while ``path`` still exists."""
    if head is None:
        parsed = read_instance(path, config, Findings(config.rules))
        if parsed.dataset is None:
            raise ValueError("a validated instance no longer reads as a data set")
        syntax = transfer_syntax or (str(parsed.transfer_syntax)
                                     if parsed.transfer_syntax else None)
        return DescribedInstance(parsed.dataset, size, sha256, syntax, parsed.pixel_data, key)
    pixel = None
    if "pixel_tag" in head:
        pixel = PixelDataElement(tag=int(head["pixel_tag"]), vr=str(head["pixel_vr"]),
                                 length=None, value_offset=int(head["bytes"]))
    return DescribedInstance(read_head(path, config.defer_size), size, sha256,
                             transfer_syntax, pixel, key)


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
    bytes, values the read deferred (over its ``defer_size``) but sequences, and the pixel
    data, given as BulkDataURIs (``<bulk_data_uri>#<tag>``).

    Large values stay references, so the sidecar stays small, a consumer fetches bulk data
    from the stored instance only when it needs it, and describing never loads a deferred
    value: a document or waveform of hundreds of megabytes costs no memory here. A deferred
    sequence is read and given whole (PS3.18 has no reference for one): what its items
    hold is bounded by the limits the file was validated within (``max_loaded_bytes``,
    ``max_items``)."""

    def reference(tag: int) -> str:
        return f"{bulk_data_uri}#{tag:08X}"

    deferred = {tag: vr for tag, vr in deferred_elements(instance.dataset).items()
                if vr != "SQ"}  # a sequence's values are bounded by the limits: read it
    dataset = instance.dataset
    if deferred:
        dataset = Dataset()
        for tag in instance.dataset.keys():  # noqa: SIM118 - a Dataset iterates elements
            if tag not in deferred:
                dataset.add(instance.dataset[tag])
    document: dict[str, Any] = dataset.to_json_dict(
        bulk_data_threshold=threshold,
        bulk_data_element_handler=lambda element: reference(element.tag))
    document.update({f"{tag:08X}": {"vr": vr, "BulkDataURI": reference(tag)}
                     for tag, vr in deferred.items()})
    pixel = instance.pixel_data
    if pixel is not None:
        document[f"{pixel.tag:08X}"] = {"vr": pixel.vr, "BulkDataURI": reference(pixel.tag)}
    return dict(sorted(document.items()))
