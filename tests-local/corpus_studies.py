"""Studies of any size made of real files: pydicom's corpus files re-identified per instance.

Each series is one real corpus file (native CT, native MR, JPEG 2000, RLE colour) repeated
with its own SeriesInstanceUID; each instance gets its own SOPInstanceUID and InstanceNumber,
and all share one patient and study (the first template's values), so the study is valid and
consistent however many instances it has. UIDs derive from ``seed``: the same call gives the
same study, another seed another one. Used by the scale tests and benchmarks.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from functools import cache

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pacs_validator.dicom.config import build_config

TEMPLATES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm")
"""Real files the validator passes (status 200), of four modalities and transfer syntaxes."""


@cache
def _template(name: str) -> Dataset:
    dataset = pydicom.dcmread(get_testdata_file(name))
    dataset.pop("NumberOfStudyRelatedInstances", None)
    return dataset


def _shared_attributes() -> dict[str, object]:
    """The patient and study attributes every instance carries: the first template's."""
    config = build_config()
    first = _template(TEMPLATES[0])
    return {keyword: first.get(keyword)
            for keyword in (*config.patient_attributes, *config.study_attributes)}


def reidentified_study(instances: int, series: int = 4, seed: str = "study"
                       ) -> Iterator[tuple[str, bytes]]:
    """``instances`` files (name, bytes) of one valid study in ``series`` series."""
    shared = _shared_attributes()
    study_uid = generate_uid(entropy_srcs=[seed, "study"])
    for index in range(instances):
        number = index % series
        dataset = copy.deepcopy(_template(TEMPLATES[number % len(TEMPLATES)]))
        for keyword, value in shared.items():
            if value is None:
                dataset.pop(keyword, None)
            else:
                setattr(dataset, keyword, value)
        sop_uid = generate_uid(entropy_srcs=[seed, "instance", str(index)])
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series", str(number)])
        dataset.SeriesNumber = number + 1
        dataset.SOPInstanceUID = sop_uid
        dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
        dataset.InstanceNumber = index // series + 1
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        yield f"s{number + 1:02d}-{index:06d}.dcm", buffer.getvalue()
