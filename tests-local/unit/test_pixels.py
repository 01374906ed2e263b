"""Pixel data integrity: native length = Rows x Columns x SamplesPerPixel x BitsAllocated x
NumberOfFrames / 8 (PS3.5 8.1.1, padded to even), encapsulated fragments agree with
NumberOfFrames (PS3.5 A.4), and the Image Pixel attributes agree with each other (PS3.3 C.7.6.3).
"""

from __future__ import annotations

import pytest

NATIVE = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "CT_small.dcm",
          "SC_rgb_small_odd.dcm", "SC_ybr_full_422_uncompressed.dcm"]


def rules(result) -> set[str]:
    return {f.rule for f in result.findings}


def native_bytes(ds) -> int:
    """What PS3.5 8.1.1 requires, for the photometric interpretations in these files."""
    bits = (ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated
            * int(ds.get("NumberOfFrames", 1)))
    if ds.PhotometricInterpretation == "YBR_FULL_422":
        bits = bits * 2 // 3
    return (bits + 7) // 8


@pytest.mark.parametrize("name", NATIVE)
def test_real_native_pixel_data_has_the_length_the_attributes_require(name, corpus, validate):
    ds = corpus.read(corpus.path(name))
    expected = native_bytes(ds)
    assert len(ds.PixelData) in (expected, expected + expected % 2)  # the premise
    assert "pixel.native-length" not in rules(validate(corpus.path(name)))


@pytest.mark.parametrize("name", NATIVE)
def test_shortened_native_pixel_data_is_422(name, mutate, validate):
    def shorten(ds):
        ds.PixelData = ds.PixelData[:-2]  # pydicom writes the element's new length

    result = validate(mutate(name, shorten))
    assert result.status == 422
    native = [f for f in result.findings if f.rule == "pixel.native-length"]
    assert [(f.tag, f.keyword) for f in native] == [("(7FE0,0010)", "PixelData")]
    assert "shorter" in native[0].message


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm"])
def test_native_pixel_data_with_an_extra_row_of_bytes_is_422(name, mutate, validate):
    def lengthen(ds):
        ds.PixelData = ds.PixelData + bytes(ds.Columns * ds.BitsAllocated // 8)

    result = validate(mutate(name, lengthen))
    assert result.status == 422
    assert "pixel.native-length" in rules(result)


def test_real_file_with_pixel_data_longer_than_its_attributes_is_422(corpus, validate):
    ds = corpus.read(corpus.path("MR_small_padded.dcm"))
    assert len(ds.PixelData) > native_bytes(ds) + 1  # more than the one pad byte allowed
    result = validate(corpus.path("MR_small_padded.dcm"))
    assert result.status == 422
    assert "pixel.native-length" in rules(result)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "CT_small.dcm"])
@pytest.mark.parametrize(("keyword", "delta"), [("Rows", 1), ("Rows", -1), ("Columns", 1),
                                                ("Columns", -1)])
def test_rows_or_columns_changed_make_native_length_wrong(name, keyword, delta, mutate,
                                                          validate):
    result = validate(mutate(name, lambda ds: setattr(ds, keyword, ds[keyword].value + delta)))
    assert result.status == 422
    assert "pixel.native-length" in rules(result)


def test_native_file_claiming_two_frames_is_422(mutate, validate):
    result = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, "NumberOfFrames", 2)))
    assert result.status == 422
    assert "pixel.native-length" in rules(result)


def test_ybr_full_422_relabelled_rgb_is_422(mutate, validate):
    # YBR_FULL_422 stores 2 bytes per pixel (chroma shared by pixel pairs); RGB needs 3.
    result = validate(mutate("SC_ybr_full_422_uncompressed.dcm",
                             lambda ds: setattr(ds, "PhotometricInterpretation", "RGB")))
    assert result.status == 422
    assert "pixel.native-length" in rules(result)


def test_ybr_full_422_relabelled_ybr_partial_422_keeps_its_length(mutate, validate):
    # YBR_PARTIAL_422 (retired) has the same 4:2:2 layout as YBR_FULL_422 (PS3.3 C.7.6.3.1.2),
    # only its value ranges differ, so the native length is the same.
    result = validate(mutate("SC_ybr_full_422_uncompressed.dcm",
                             lambda ds: setattr(ds, "PhotometricInterpretation",
                                                "YBR_PARTIAL_422")))
    assert "pixel.native-length" not in rules(result)
    assert result.status == 200


def test_bits_stored_greater_than_bits_allocated_is_422(mutate, validate):
    result = validate(mutate("MR_small.dcm",
                             lambda ds: setattr(ds, "BitsStored", ds.BitsAllocated + 1)))
    assert result.status == 422
    bits = [f for f in result.findings if f.rule == "pixel.bits"]
    assert [f.keyword for f in bits] == ["BitsStored"]


def test_high_bit_outside_bits_allocated_is_422(mutate, validate):
    result = validate(mutate("CT_small.dcm",
                             lambda ds: setattr(ds, "HighBit", ds.BitsAllocated)))
    assert result.status == 422
    assert [f.keyword for f in result.findings if f.rule == "pixel.bits"] == ["HighBit"]


def test_bits_allocated_not_a_multiple_of_eight_is_422(mutate, validate):
    def edit(ds):
        ds.BitsAllocated = 12
        ds.BitsStored = 12
        ds.HighBit = 11

    result = validate(mutate("MR_small.dcm", edit))
    assert result.status == 422
    assert "BitsAllocated" in [f.keyword for f in result.findings if f.rule == "pixel.bits"]


def test_three_samples_per_pixel_with_monochrome2_is_422(mutate, validate):
    result = validate(mutate("MR_small.dcm", lambda ds: setattr(ds, "SamplesPerPixel", 3)))
    assert result.status == 422
    photometric = [f for f in result.findings if f.rule == "pixel.photometric"]
    assert [f.keyword for f in photometric] == ["PhotometricInterpretation"]


def test_rgb_with_one_sample_per_pixel_is_422(mutate, validate):
    result = validate(mutate("MR_small.dcm",
                             lambda ds: setattr(ds, "PhotometricInterpretation", "RGB")))
    assert result.status == 422
    assert "pixel.photometric" in rules(result)
    assert "pixel.native-length" not in rules(result)  # the length itself still agrees


def test_missing_rows_is_422_pixel_attributes(mutate, validate):
    result = validate(mutate("CT_small.dcm", lambda ds: delattr(ds, "Rows")))
    assert result.status == 422
    assert [f.keyword for f in result.findings if f.rule == "pixel.attributes"] == ["Rows"]


def test_image_without_pixel_data_is_reported(mutate, validate):
    result = validate(mutate("CT_small.dcm", lambda ds: delattr(ds, "PixelData")))
    missing = [f for f in result.findings if f.rule == "pixel.missing"]
    assert [(f.tag, f.keyword) for f in missing] == [("(7FE0,0010)", "PixelData")]


def _without_pixel_data(how: str, corpus, mutate, write_bytes):
    if how == "element deleted":
        return mutate("CT_small.dcm", lambda ds: delattr(ds, "PixelData"))
    data = corpus.path("MR_small.dcm").read_bytes()
    return write_bytes(data[: data.index(b"\xe0\x7f\x10\x00OW")], "cut-before-pixels.dcm")


@pytest.mark.parametrize("how", ["element deleted", "file cut exactly before PixelData"])
def test_image_with_neither_pixel_data_nor_provider_url_is_422(how, corpus, mutate,
                                                               write_bytes, validate):
    result = validate(_without_pixel_data(how, corpus, mutate, write_bytes))
    assert result.status == 422


# --- encapsulated pixel data ---------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 3])
def test_two_frame_rle_file_with_number_of_frames_changed_is_422(frames, mutate, validate):
    result = validate(mutate("SC_rgb_rle_2frame.dcm",
                             lambda ds: setattr(ds, "NumberOfFrames", frames)))
    assert result.status == 422
    counts = [f for f in result.findings if f.rule == "pixel.frame-count"]
    assert counts
    assert {f.keyword for f in counts} == {"NumberOfFrames"}


def test_two_frame_rle_file_without_number_of_frames_is_422(mutate, validate):
    # NumberOfFrames absent means one frame; the file holds two RLE fragments, one per frame.
    result = validate(mutate("SC_rgb_rle_2frame.dcm", lambda ds: delattr(ds, "NumberOfFrames")))
    assert result.status == 422
    assert "pixel.frame-count" in rules(result)


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jp2klossless.dcm", "SC_rgb_rle_16bit_2frame.dcm"])
def test_encapsulated_file_with_number_of_frames_raised_is_422(name, mutate, validate):
    def raise_frames(ds):
        ds.NumberOfFrames = int(ds.get("NumberOfFrames", 1)) + 1

    result = validate(mutate(name, raise_frames))
    assert result.status == 422
    assert "pixel.frame-count" in rules(result)


def test_jpeg_frame_without_start_of_image_marker_is_422(corpus, write_bytes, validate):
    data = bytearray(corpus.path("JPGExtended.dcm").read_bytes())
    soi = data.index(b"\xff\xd8\xff")  # the single frame's JPEG Start Of Image
    data[soi:soi + 2] = b"\x00\x00"
    result = validate(write_bytes(bytes(data), "no-soi.dcm"))
    assert result.status == 422
    assert "pixel.frame-count" in rules(result)


def _swap_transfer_syntax(data: bytes, old: str, new: str) -> bytes:
    assert len(old) == len(new)
    at = data.index(old.encode(), 0, 400)
    return data[:at] + new.encode() + data[at + len(old):]


def test_native_pixel_data_under_an_encapsulated_transfer_syntax_is_422(corpus, write_bytes,
                                                                      validate):
    data = corpus.path("MR_small.dcm").read_bytes()
    mutated = _swap_transfer_syntax(data, "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5")  # RLE
    result = validate(write_bytes(mutated, "native-as-rle.dcm"))
    assert result.status == 422
    assert "pixel.encapsulation" in rules(result)


def test_encapsulated_pixel_data_under_a_native_transfer_syntax_is_422(corpus, write_bytes,
                                                                     validate):
    data = corpus.path("SC_rgb_rle_2frame.dcm").read_bytes()
    mutated = _swap_transfer_syntax(data, "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1")
    result = validate(write_bytes(mutated, "rle-as-native.dcm"))
    assert result.status == 422
    assert "pixel.encapsulation" in rules(result)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.100",  # MPEG-2 MP@ML
                                    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 HP@4.1
                                    "1.2.840.10008.1.2.4.107"])  # HEVC/H.265 Main@5.1
def test_video_stream_with_more_frames_than_fragments_is_not_a_frame_count_error(
    syntax, mutate, validate
):
    # PS3.5 8.2.5-8.2.8: a video is one stream split into fragments of any size, and
    # NumberOfFrames counts video frames, so 30 frames in one fragment is normal.
    def as_video(ds):
        ds.file_meta.TransferSyntaxUID = syntax
        ds.NumberOfFrames = 30

    result = validate(mutate("JPEG-lossy.dcm", as_video))
    assert "pixel.frame-count" not in rules(result)
    assert result.status == 200
