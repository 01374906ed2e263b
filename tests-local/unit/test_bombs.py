"""Bounded work on any input: each limit refuses a file just over it, and only such files.

The files are small versions of the hostile families of ``benchmarks/bench_bombs.py``, built
from real corpus files; the limits are lowered through configuration where the default
would need a large file. Each limit is tested at its edge: at the limit the file is read
as before, one over it the file is refused with the limit's rule.
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from crafted import claim_codestream_size, with_several
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from pacs_validator.dicom.config import ConfigError, ValidatorConfig, build_config
from pacs_validator.dicom.description import DescribedInstance, dicom_json
from pacs_validator.dicom.pixels import codestream_frame_bytes
from pacs_validator.dicom.previews import PREVIEW_SIZE, render_preview
from pacs_validator.dicom.rules import Severity
from pacs_validator.dicom.structure import LIMIT_RULES
from pacs_validator.dicom.validation import validate_instance

MIB = 1024 * 1024
PRIVATE_SEQUENCE = 0x60011010
"""A private sequence after every group of the corpus files used, before Pixel Data."""


def limited(**limits: int) -> ValidatorConfig:
    return build_config({"limits": limits})


def error_rules(result) -> list[str]:
    return [f.rule for f in result.findings if f.severity is Severity.ERROR]


def items_in(dataset: Dataset) -> int:
    """Sequence items at every depth."""
    return sum(len(element.value) for element in dataset.iterall() if element.VR == "SQ")


def with_private_value(length: int):
    def edit(dataset: Dataset) -> None:
        dataset.add_new(0x60010010, "LO", "BOUNDS")
        dataset.add_new(0x60011010, "OB", bytes(length))
    return edit


def with_items(count: int, syntax: str = ExplicitVRLittleEndian):
    def edit(dataset: Dataset) -> None:
        dataset.add_new(0x60010010, "LO", "BOUNDS")
        dataset.add_new(PRIVATE_SEQUENCE, "SQ", Sequence([Dataset() for _ in range(count)]))
        dataset.file_meta.TransferSyntaxUID = syntax
    return edit


def with_nesting(levels: int):
    def edit(dataset: Dataset) -> None:
        inner = Dataset()
        for _ in range(levels - 1):
            outer = Dataset()
            outer.add_new(PRIVATE_SEQUENCE, "SQ", Sequence([inner]))
            inner = outer
        dataset.add_new(0x60010010, "LO", "BOUNDS")
        dataset.add_new(PRIVATE_SEQUENCE, "SQ", Sequence([inner]))
    return edit


def deflated(edit):
    def both(dataset: Dataset) -> None:
        edit(dataset)
        dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return both


# --------------------------------------------------------------------------------------------
# Inflation


def test_deflated_data_set_inflating_past_the_limit_is_refused(mutate, validate):
    path = mutate("CT_small.dcm", deflated(with_private_value(2 * MIB)))
    assert path.stat().st_size < 100_000

    refused = validate(path, limited(max_inflated_bytes=MIB))

    assert refused.status == 413
    assert error_rules(refused) == ["format.inflated-size"]
    assert validate(path).status == 200


def test_deflated_file_with_values_pydicom_defers_is_read_from_the_inflated_data_set(
        mutate, validate, config):
    """pydicom reads the inflated copy; values larger than defer_size are read back from it."""
    path = mutate("CT_small.dcm", deflated(with_private_value(4 * config.defer_size)))

    assert validate(path).status == 200


@pytest.mark.parametrize(("syntax", "held_mib"), [
    (ExplicitVRLittleEndian, 4),
    (DeflatedExplicitVRLittleEndian, 12),  # the inflated copy is spooled, 8 MiB in memory
])
def test_large_values_are_never_loaded(syntax, held_mib, mutate, config):
    """A private value of 32 MiB stays deferred (pydicom's Dataset.elements() would load
    it) and, deflated, spooled to disk. (Not the ``validate`` fixture: its PHI check reads
    the whole file with pydicom.)"""
    def edit(dataset: Dataset) -> None:
        with_private_value(32 * MIB)(dataset)
        dataset.file_meta.TransferSyntaxUID = syntax

    path = mutate("CT_small.dcm", edit)
    tracemalloc.start()
    try:
        result, _ = validate_instance(path, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.status == 200
    assert peak < held_mib * MIB


def test_deferred_values_of_a_deflated_file_stay_readable_after_validation(mutate, config):
    """The metadata's DICOM JSON reads deferred values after validation has returned: from
    the inflated copy, which lives as long as the data set."""
    path = mutate("CT_small.dcm", deflated(with_private_value(4 * config.defer_size)))
    result, parsed = validate_instance(path, config)
    instance = DescribedInstance.of(result, parsed, key=None)
    assert instance is not None

    document = dicom_json(instance, bulk_data_uri="stored")

    assert document["60011010"] == {"vr": "OB", "BulkDataURI": "stored#60011010"}


# --------------------------------------------------------------------------------------------
# Counts and depth, from the structural scan


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_sequence_items_over_the_limit_are_refused_before_pydicom(syntax, corpus, mutate,
                                                                  validate):
    own_items = items_in(corpus.read(corpus.path("CT_small.dcm")))
    cap = limited(max_items=own_items + 20)
    at_cap = mutate("CT_small.dcm", with_items(20, syntax))
    over = mutate("CT_small.dcm", with_items(21, syntax))

    assert validate(at_cap, cap).status == 200
    result = validate(over, cap)
    assert result.status == 413
    assert error_rules(result) == ["format.item-count"]


def with_private_values(count: int, length: int, nested: bool = False):
    """``count`` private OB values of ``length`` bytes, top-level or in a sequence item."""
    def edit(dataset: Dataset) -> None:
        holder = Dataset() if nested else dataset
        for index in range(count):
            holder.add_new(0x60011100 + index, "OB", bytes(length))
        dataset.add_new(0x60010010, "LO", "BOUNDS")
        if nested:
            dataset.add_new(PRIVATE_SEQUENCE, "SQ", Sequence([holder]))
    return edit


@pytest.mark.parametrize(("count", "length", "nested", "refused"), [
    (15, 64 * 1024, False, False),  # top-level values of defer_size bytes are loaded...
    (17, 64 * 1024, False, True),
    (1, 2 * MIB, False, False),     # ...larger ones are deferred, never loaded...
    (1, 2 * MIB, True, True),       # ...unless in a sequence item: pydicom defers none there
])
def test_values_pydicom_would_hold_over_the_limit_are_refused(count, length, nested, refused,
                                                              mutate, validate, config):
    assert config.defer_size == 64 * 1024
    path = mutate("CT_small.dcm", with_private_values(count, length, nested))

    result = validate(path, limited(max_loaded_bytes=MIB))

    assert error_rules(result) == (["format.loaded-size"] if refused else [])
    assert result.status == (413 if refused else 200)


def test_encapsulated_pixels_in_a_sequence_item_count_as_loaded(mutate, validate):
    """An icon image's encapsulated pixel data is loaded by pydicom, as every value in an
    item is."""
    def with_icon(fragment_bytes: int):
        def edit(dataset: Dataset) -> None:
            icon = Dataset()
            icon.PixelData = encapsulate([b"\xff\xd8" + bytes(fragment_bytes - 2)])
            icon["PixelData"].VR = "OB"
            icon["PixelData"].is_undefined_length = True
            dataset.IconImageSequence = Sequence([icon])
        return edit

    cap = limited(max_loaded_bytes=MIB)
    assert error_rules(validate(mutate("SC_rgb_jpeg_dcmtk.dcm", with_icon(1024)), cap)) == []
    result = validate(mutate("SC_rgb_jpeg_dcmtk.dcm", with_icon(2 * MIB)), cap)
    assert error_rules(result) == ["format.loaded-size"]


@pytest.mark.parametrize(("vr", "value", "refused"), [
    ("DS", "\\".join(["1"] * 2000), True),   # pydicom makes 2,000 numbers of it
    ("US", [1] * 2000, True),
    ("LT", "\\".join(["1"] * 2000), False),  # one string: LT is never split
])
def test_values_over_the_limit_are_refused(vr, value, refused, mutate, validate):
    def edit(dataset: Dataset) -> None:
        dataset.add_new(0x60010010, "LO", "BOUNDS")
        dataset.add_new(0x60011000, vr, value)

    result = validate(mutate("CT_small.dcm", edit), limited(max_values=1000))

    assert error_rules(result) == (["format.value-count"] if refused else [])


@pytest.mark.parametrize(("loaded_values", "refused"), [(640, True), (384, False)])
def test_files_within_each_limit_are_refused_when_their_costs_add_up(loaded_values, refused,
                                                                     mutate, validate):
    """300,000 values (60 % of their limit) and 40 MiB loaded (62 %): each within its limit,
    together estimated at more than the default budget (issue 31: such files cost the sum
    of their costs). With 24 MiB loaded the file is just under it, and valid."""
    path = mutate("CT_small.dcm", with_several(values=300_000, loaded_values=loaded_values))

    result = validate(path)

    assert error_rules(result) == (["format.estimated-size"] if refused else [])
    assert result.status == (413 if refused else 200)


def test_estimated_cost_is_refused_only_past_the_limit(mutate, validate, config):
    """The scan's counts of items, elements, values and loaded bytes together: at the
    limit a file is read as before, one byte under it refused."""
    path = mutate("CT_small.dcm", with_several(items=200, values=3_000, loaded_values=4))
    _, parsed = validate_instance(path, config)
    estimate = parsed.estimated_bytes
    assert estimate > config.limits.max_estimated_bytes // 1000  # not CT_small's alone

    assert validate(path, limited(max_estimated_bytes=estimate)).status == 200
    result = validate(path, limited(max_estimated_bytes=estimate - 1))
    assert result.status == 413
    assert error_rules(result) == ["format.estimated-size"]


def test_data_elements_over_the_limit_are_refused(corpus, validate):
    path = corpus.path("CT_small.dcm")
    elements = sum(1 for _ in corpus.read(path).iterall())

    assert validate(path, limited(max_elements=elements)).status == 200
    result = validate(path, limited(max_elements=elements - 1))
    assert result.status == 413
    assert error_rules(result) == ["format.element-count"]


def test_sequences_nested_past_the_default_depth_are_refused(mutate, validate):
    assert validate(mutate("CT_small.dcm", with_nesting(64))).status == 200
    result = validate(mutate("CT_small.dcm", with_nesting(65)))
    assert result.status == 413
    assert error_rules(result) == ["format.nesting-depth"]


def test_pixel_data_fragments_over_the_limit_are_refused(mutate, validate):
    def split_into(fragments: int):
        def edit(dataset: Dataset) -> None:
            [frame] = generate_frames(dataset.PixelData, number_of_frames=1)
            dataset.PixelData = encapsulate([frame], fragments_per_frame=fragments)
        return edit

    cap = limited(max_fragments=4)
    assert validate(mutate("SC_rgb_jpeg_dcmtk.dcm", split_into(4)), cap).status == 200
    result = validate(mutate("SC_rgb_jpeg_dcmtk.dcm", split_into(5)), cap)
    assert result.status == 413
    assert error_rules(result) == ["format.fragment-count"]


# --------------------------------------------------------------------------------------------
# The declared pixel matrix


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "JPEG2000.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_frame_declared_larger_than_any_real_one_is_refused(name, mutate, validate):
    """65535 x 65535 (the largest US values) at 8 or 16 bits is 4 to 13 GB a frame."""
    def huge(dataset: Dataset) -> None:
        dataset.Rows = dataset.Columns = 65535

    result = validate(mutate(name, huge))

    assert result.status == 413
    assert error_rules(result) == ["pixel.matrix-size"]
    assert [f.keyword for f in result.findings if f.rule == "pixel.matrix-size"] == ["Rows"]


def test_frame_size_limit_is_rows_columns_samples_and_bytes_per_sample(corpus, validate):
    path = corpus.path("SC_rgb_jpeg_dcmtk.dcm")  # 100 x 100, RGB, 8 bits
    assert validate(path, limited(max_frame_bytes=100 * 100 * 3)).status == 200
    result = validate(path, limited(max_frame_bytes=100 * 100 * 3 - 1))
    assert error_rules(result) == ["pixel.matrix-size"]


def test_number_of_frames_over_the_limit_is_refused(mutate, validate):
    def frames(count: int):
        return lambda dataset: setattr(dataset, "NumberOfFrames", count)

    result = validate(mutate("SC_rgb_jpeg_dcmtk.dcm", frames(2**31 - 1)))

    assert result.status == 413
    assert error_rules(result) == ["pixel.matrix-size"]
    assert [f.keyword for f in result.findings] == ["NumberOfFrames"]


# --------------------------------------------------------------------------------------------
# Previews


def test_frame_too_large_to_preview_is_a_warning_not_a_verdict(corpus, validate):
    path = corpus.path("MR_small_RLE.dcm")  # 64 x 64, 16 bits: 8192 bytes a frame
    exact, under = limited(max_preview_frame_bytes=8192), limited(max_preview_frame_bytes=8191)

    assert render_preview(path, exact.rules, limits=exact.limits).png is not None
    preview = render_preview(path, under.rules, limits=under.limits)
    assert preview.png is None
    assert [(f.rule, f.severity) for f in preview.findings] == [
        ("preview.too-large", Severity.WARNING)]
    assert validate(path, under).status == 200


def codestream_claiming(width: int, height: int) -> Callable[[Dataset], None]:
    """An edit that makes the frame's own codestream header declare ``width`` x ``height``."""
    return lambda dataset: claim_codestream_size(dataset, width, height)


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "JPEG2000.dcm"])
def test_codestream_declaring_a_frame_too_large_is_not_decoded(name, mutate):
    """Decoders allocate what the codestream declares: 30000 x 30000 is checked, not
    decoded (libjpeg filled 2.9 GB for the JPEG one)."""
    rules = build_config().rules

    preview = render_preview(mutate(name, codestream_claiming(30000, 30000)), rules)

    assert preview.png is None
    assert [f.rule for f in preview.findings] == ["preview.too-large"]
    assert render_preview(mutate(name, lambda dataset: None), rules).png is not None


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm",
                                  "JPGExtended.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "JPEG2000.dcm", "MR_small_jp2klossless.dcm",
                                  "examples_ybr_color.dcm"])
def test_codestream_size_of_real_frames_is_their_decoded_size(name, corpus):
    dataset = corpus.read(corpus.path(name))
    frames = int(dataset.get("NumberOfFrames") or 1)
    first = next(generate_frames(dataset.PixelData, number_of_frames=frames))
    bits = 8 * ((dataset.BitsStored + 7) // 8)  # what the codestream holds, maybe < allocated

    declared = codestream_frame_bytes(first[:4096])

    assert declared == dataset.Rows * dataset.Columns * dataset.SamplesPerPixel * bits // 8


def test_file_over_a_structural_limit_gets_no_preview_and_a_warning(corpus, mutate):
    cap = limited(max_items=items_in(corpus.read(corpus.path("CT_small.dcm"))) + 20)
    path = mutate("CT_small.dcm", with_items(21))

    preview = render_preview(path, cap.rules, limits=cap.limits)

    assert preview.png is None
    assert [f.rule for f in preview.findings] == ["preview.too-large"]


def test_deflated_file_is_not_inflated_for_a_preview(corpus):
    """pydicom decodes no frame of a deflated file, so its data set is not even inflated."""
    preview = render_preview(corpus.path("image_dfl.dcm"), build_config().rules,
                             limits=limited(max_inflated_bytes=1).limits)

    assert preview.png is None
    assert [f.rule for f in preview.findings] == ["preview.undecodable"]


def test_large_frame_is_reduced_by_block_means_to_the_same_picture(mutate):
    """A 2048 x 1536 frame (eight times the preview) of a smooth pattern: the preview is
    the pattern, scaled, whatever the reduction."""
    rows, columns = 1536, 2048
    y, x = np.mgrid[0:rows, 0:columns]
    pattern = (2000 + 1000 * np.sin(x / 150) * np.cos(y / 110)).astype(np.uint16)

    def large(dataset: Dataset) -> None:
        dataset.Rows, dataset.Columns = rows, columns
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
        dataset.PixelRepresentation = 0
        dataset.RescaleSlope, dataset.RescaleIntercept = 1, 0
        for keyword in ("WindowCenter", "WindowWidth"):
            dataset.pop(keyword, None)
        dataset.PixelData = pattern.tobytes()

    preview = render_preview(mutate("CT_small.dcm", large), build_config().rules)

    assert preview.png is not None
    image = np.asarray(Image.open(io.BytesIO(preview.png)), dtype=float)
    assert image.shape == (PREVIEW_SIZE * rows // columns, PREVIEW_SIZE)
    expected = np.asarray(Image.fromarray(pattern.astype(np.float32)).resize(
        (image.shape[1], image.shape[0]), Image.Resampling.BILINEAR))
    assert np.corrcoef(image.ravel(), expected.ravel())[0, 1] > 0.99


# --------------------------------------------------------------------------------------------
# Configuration


def test_limits_are_overridden_one_by_one():
    config = limited(max_items=7)
    defaults = build_config().limits
    assert config.limits.max_items == 7
    assert config.limits.max_elements == defaults.max_elements


@pytest.mark.parametrize("limits", [
    {"max_items": 0},
    {"max_items": -1},
    {"max_items": "many"},
    {"max_items": True},
    {"max_items": 1.5},
    {"max_things": 3},
])
def test_malformed_limit_is_a_config_error(limits):
    with pytest.raises(ConfigError):
        build_config({"limits": limits})


def test_limits_must_be_an_object():
    with pytest.raises(ConfigError):
        build_config({"limits": [1, 2]})


def test_default_limits_never_bind_on_the_real_corpus(corpus, config):
    """No bundled corpus file meets a limit: a limit's finding is the only way it changes
    a verdict (reading stops there), so the defaults refuse only what no real file is."""
    limit_rules = LIMIT_RULES | {"pixel.matrix-size"}

    for path in corpus.all_files():
        result, _ = validate_instance(path, config)
        assert not limit_rules & {f.rule for f in result.findings}, path.name
