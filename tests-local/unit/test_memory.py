"""Pixel data is never loaded: validating a ~50 MB multi-frame file allocates a few MB.

Nothing here is timed; memory is measured with tracemalloc around ``validate_instance``.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
from pathlib import Path

import pytest

from pacs_validator.dicom.description import (
    DescribedInstance,
    describe,
    described_again,
    dicom_json,
    head_of,
)
from pacs_validator.dicom.validation import validate_instance

FRAMES = 6400  # 64 x 64 x 16 bit = 8 KiB a frame: 50 MiB of pixel data
MiB = 1024 * 1024


class ForwardOnlyFile(io.RawIOBase):
    """A file read as a non-seekable stream (like an S3 body), without holding it in memory."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:  # type: ignore[override]
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


def synthesise(corpus, path: Path, frames: int, missing_bytes: int = 0) -> Path:
    """MR_small's attributes with ``frames`` native frames, the pixel data written sparsely."""
    dataset = corpus.read(corpus.path("MR_small.dcm"))
    del dataset.PixelData
    for tag in [e.tag for e in dataset if e.tag > 0x7FE00010]:
        del dataset[tag]  # PixelData is appended last, so nothing may follow it in tag order
    dataset.NumberOfFrames = frames
    corpus.write(dataset, path)
    frame = dataset.Rows * dataset.Columns * dataset.SamplesPerPixel * dataset.BitsAllocated // 8
    length = frame * frames - missing_bytes
    with path.open("r+b") as out:
        out.seek(0, io.SEEK_END)
        # (7FE0,0010) OW, explicit VR little endian: tag, VR, 2 reserved bytes, 4-byte length.
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        out.truncate(out.tell() + length)
    return path


def peak_while(run):
    tracemalloc.start()
    try:
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture
def big_file(corpus, tmp_path) -> Path:
    path = synthesise(corpus, tmp_path / "big.dcm", FRAMES)
    assert path.stat().st_size > 50 * MiB
    dataset = corpus.read(path, pixels=False)
    assert int(dataset.NumberOfFrames) == FRAMES  # pydicom agrees on what was written
    return path


def test_50mb_multiframe_file_validates_without_loading_pixel_data(big_file, config):
    (result, parsed), peak = peak_while(lambda: validate_instance(big_file, config))
    assert result.status == 200, [f.to_dict() for f in result.findings]
    assert parsed.pixel_data is not None
    assert parsed.pixel_data.length == FRAMES * 64 * 64 * 2
    assert peak < 10 * MiB, f"peak {peak / MiB:.1f} MiB for a {big_file.stat().st_size} B file"
    assert "PixelData" not in parsed.dataset


def test_50mb_multiframe_file_one_frame_short_is_422_with_the_same_small_footprint(
    corpus, tmp_path, config
):
    path = synthesise(corpus, tmp_path / "short.dcm", FRAMES, missing_bytes=64 * 64 * 2)
    (result, _), peak = peak_while(lambda: validate_instance(path, config))
    assert result.status == 422
    assert "pixel.native-length" in {f.rule for f in result.findings}
    assert peak < 10 * MiB


def test_50mb_file_from_a_non_seekable_stream_is_spooled_not_held(big_file, config):
    stream = ForwardOnlyFile(big_file)
    try:
        (result, _), peak = peak_while(lambda: validate_instance(stream, config, name="big"))
    finally:
        stream.close()
    assert result.status == 200
    assert result.size == big_file.stat().st_size
    assert peak < big_file.stat().st_size / 2, f"peak {peak / MiB:.1f} MiB"


def test_a_large_value_before_the_pixel_data_is_described_as_a_reference_never_loaded(
        mutate, config, tmp_path):
    """A real CT with a 48 MiB private blob in front of its pixel data: the head storing
    reads holds the blob, and describing it (metadata entry and DICOM JSON) allocates a few
    MB, the blob a BulkDataURI, as does the description from validation's read."""
    blob_tags = []

    def with_blob(dataset):
        block = dataset.private_block(0x0009, "PACS VALIDATOR TEST", create=True)
        block.add_new(0x01, "OB", bytes(48 * MiB))
        blob_tags.append(f"{block.get_tag(0x01):08X}")

    path = mutate("CT_small.dcm", with_blob)
    result, parsed = validate_instance(path, config)
    assert result.status == 200, [f.to_dict() for f in result.findings]
    head = head_of(parsed)
    assert head is not None and head["bytes"] > 48 * MiB
    copy = tmp_path / "head.dcm"
    with path.open("rb") as source, copy.open("wb") as target:
        target.write(source.read(head["bytes"]))

    def described() -> tuple:
        instance = described_again(copy, head, size=result.size, sha256=result.sha256,
                                   transfer_syntax=result.summary.transfer_syntax,
                                   config=config, key="studies/s/ct.dcm")
        return describe(instance), dicom_json(instance, "studies/s/ct.dcm")

    (description, document), peak = peak_while(described)
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert document[blob_tags[0]] == {"vr": "OB",
                                      "BulkDataURI": f"studies/s/ct.dcm#{blob_tags[0]}"}
    assert description.entry["sop_instance_uid"] == str(parsed.dataset.SOPInstanceUID)
    at_validation = DescribedInstance.of(result, parsed, key="studies/s/ct.dcm")
    assert at_validation is not None
    assert peak_while(lambda: dicom_json(at_validation, "studies/s/ct.dcm"))[1] < 8 * MiB
