"""Series previews on real corpus files: each preview is the image pydicom decodes, windowed
and scaled, whatever the photometric interpretation, transfer syntax or frame count."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from pacs_validator.dicom.config import build_config
from pacs_validator.dicom.previews import PREVIEW_SIZE, render_preview
from pacs_validator.dicom.rules import Severity

RULES = build_config().rules


def corpus_file(name: str) -> Path:
    """A file of pydicom's bundled corpus or of pydicom-data (both pinned in dev extras)."""
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(path)


def reference_image(path: Path) -> np.ndarray:
    """What pydicom decodes for the middle frame: palette applied, grey levels through the
    modality LUT and the first window (or raw when there is none), MONOCHROME1 inverted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    frames = int(dataset.get("NumberOfFrames") or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    photometric = dataset.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        return apply_color_lut(pixels, dataset).astype(np.float64)
    if pixels.ndim == 3:
        return pixels.astype(np.float64)
    values = apply_modality_lut(pixels, dataset)
    if "WindowCenter" in dataset:
        values = apply_voi_lut(values, dataset, index=0)
    values = values.astype(np.float64)
    return values.max() - values if photometric == "MONOCHROME1" else values


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to 0-255 and resized to ``size`` (width, height)."""
    span = (image.max() - image.min()) or 1.0
    scaled = ((image - image.min()) * (255.0 / span)).astype(np.uint8)
    return np.asarray(Image.fromarray(scaled).resize(size, Image.Resampling.BILINEAR),
                      dtype=np.float64)


def decoded_png(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


@pytest.mark.parametrize(("name", "what"), [
    ("CT_small.dcm", "MONOCHROME2, no window: percentile window"),
    ("RG3_UNCR.dcm", "MONOCHROME1 (inverted), native"),
    ("RG3_J2KI.dcm", "MONOCHROME1, JPEG 2000 lossy"),
    ("MR2_J2KI.dcm", "JPEG 2000 lossy, with a window"),
    ("SC_rgb.dcm", "RGB, native"),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "YBR_FULL_422, JPEG baseline"),
    ("MR_small_RLE.dcm", "RLE lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless"),
    ("OBXXXX1A.dcm", "PALETTE COLOR"),
    ("emri_small.dcm", "multi-frame MONOCHROME2 (10 frames)"),
    ("SC_rgb_rle_2frame.dcm", "multi-frame RGB, RLE"),
    ("examples_ybr_color.dcm", "multi-frame YBR_FULL_422, JPEG baseline"),
])
def test_preview_is_the_decoded_middle_frame_windowed_and_scaled(name: str, what: str) -> None:
    path = corpus_file(name)

    preview = render_preview(path, RULES)

    assert preview.png is not None and preview.findings == (), what
    image = decoded_png(preview.png)
    assert max(image.size) == PREVIEW_SIZE
    reference = reference_image(path)
    assert image.mode == ("RGB" if reference.ndim == 3 else "L")
    rows, columns = reference.shape[:2]
    assert abs(image.size[0] / image.size[1] - columns / rows) < 0.02
    expected = resized(reference, image.size)
    correlation = np.corrcoef(np.asarray(image, dtype=np.float64).ravel(), expected.ravel())[0, 1]
    assert correlation > 0.95, (what, correlation)


def test_monochrome1_preview_is_inverted() -> None:
    """A MONOCHROME1 preview is the negative of the same pixels read as MONOCHROME2."""
    path = corpus_file("RG3_J2KI.dcm")
    mono2 = pydicom.dcmread(path)
    mono2.PhotometricInterpretation = "MONOCHROME2"
    buffer = io.BytesIO()
    mono2.save_as(buffer)
    buffer.seek(0)

    inverted = np.asarray(decoded_png(render_preview(path, RULES).png or b""), dtype=np.float64)
    plain = np.asarray(decoded_png(render_preview(buffer, RULES).png or b""), dtype=np.float64)

    assert np.corrcoef(inverted.ravel(), plain.ravel())[0, 1] < -0.95


def test_preview_of_a_stream_equals_the_preview_of_its_file() -> None:
    path = corpus_file("CT_small.dcm")

    assert render_preview(io.BytesIO(path.read_bytes()), RULES) == render_preview(path, RULES)


def test_instance_without_pixel_data_has_no_preview_and_no_finding() -> None:
    preview = render_preview(corpus_file("rtplan.dcm"), RULES)

    assert preview.png is None
    assert preview.findings == ()


@pytest.mark.parametrize("as_stream", [False, True])
def test_a_data_set_encoded_unlike_its_meta_says_is_previewed_as_pydicom_reads_it(
        as_stream: bool) -> None:
    """SC_rgb_jpeg.dcm's meta says explicit VR, its data set is implicit VR: pydicom reads
    it (with a warning) and decodes its JPEG frame; its frame reader alone fails."""
    path = corpus_file("SC_rgb_jpeg.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = pydicom.dcmread(path).pixel_array
        if as_stream:
            with path.open("rb") as stream:
                preview = render_preview(stream, RULES)
        else:
            preview = render_preview(path, RULES)

    assert preview.findings == ()
    assert preview.png is not None
    image = Image.open(io.BytesIO(preview.png))
    assert image.mode == "RGB" and image.size == expected.shape[1::-1]


def test_undecodable_pixels_give_no_preview_and_a_warning(tmp_path: Path) -> None:
    """A JPEG 2000 frame whose codestream stops after its first markers."""
    dataset = pydicom.dcmread(corpus_file("JPEG2000.dcm"))
    dataset.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    dataset.save_as(tmp_path / "broken.dcm")

    preview = render_preview(tmp_path / "broken.dcm", RULES)

    assert preview.png is None
    [finding] = preview.findings
    assert finding.rule == "preview.undecodable"
    assert finding.severity is Severity.WARNING
    assert finding.keyword == "PixelData"
