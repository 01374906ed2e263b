"""The instances the gateway's doors are sent in tests: real files of pydicom's corpus, and
the ways those tests break them (each break has one known C-STORE status)."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
MR_SMALL = Path(get_testdata_file("MR_small.dcm"))


def renamed(dataset: Dataset, sop_instance_uid: str) -> Dataset:
    """``dataset`` as another instance: a new SOPInstanceUID, in its file meta too."""
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    return dataset


def without_patient_id(dataset: Dataset) -> Dataset:
    """An identifying attribute missing: 0xA900, ``attribute.required``."""
    del dataset.PatientID
    return dataset


def with_pixel_data_cut(dataset: Dataset) -> Dataset:
    """Pixel data half as long as its matrix: 0xA900, a ``pixel.`` rule."""
    dataset.PixelData = dataset.PixelData[: len(dataset.PixelData) // 2]
    return dataset


def truncated(path: Path) -> bytes:
    """The file at ``path`` cut inside its data set: not readable DICOM, 0xC000."""
    data = path.read_bytes()
    return data[: len(data) // 3]


def encoded(dataset: Dataset) -> bytes:
    """``dataset`` as a PS3.10 file, as a sender writes it."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset)
    return buffer.getvalue()
