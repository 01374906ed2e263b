"""Builders of real-world file shapes, made at test time from real third-party files.

Each builder takes a real file (pydicom's bundled corpus, or ``pydicom-data``'s when
installed) and writes into a folder the shape that scanners, archives and toolkits produce
in the wild: encapsulated icons inside sequence items, trailing zero padding, private
sequences in implicit VR, odd-length private elements, offset table variants, and so on.
Nothing here is vendored: every file is derived from a corpus file or built with highdicom.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
ICON_ATTRIBUTES = ("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
                   "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation")


def read(path: Path) -> Dataset:
    """A real file as pydicom reads it, pixel data included, warnings muted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def write(dataset: Dataset, path: Path, **options: object) -> Path:
    """Write ``dataset`` as read (same transfer syntax and meta) unless options say otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.save_as(path, **options)  # type: ignore[arg-type]
    return path


def edited(source: Path, target: Path, edit: Callable[[Dataset], object]) -> Path:
    """A copy of ``source`` with ``edit(dataset)`` applied."""
    dataset = read(source)
    edit(dataset)
    return write(dataset, target)


def with_icon(source: Path, target: Path) -> Path:
    """``source`` with an Icon Image Sequence (0088,0200) item holding its own first frame,
    encoded like the file's pixel data: encapsulated with undefined length when the transfer
    syntax is compressed (as Siemens MR and many segmentations carry it), native otherwise."""
    dataset = read(source)
    icon = Dataset()
    for keyword in ICON_ATTRIBUTES:
        setattr(icon, keyword, dataset.get(keyword))
    syntax = dataset.file_meta.TransferSyntaxUID
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if syntax.is_encapsulated:
        first = next(generate_frames(dataset.PixelData, number_of_frames=frames))
        icon.PixelData = encapsulate([first])
        icon["PixelData"].VR = "OB"
        icon["PixelData"].is_undefined_length = True
    else:
        icon.PixelData = dataset.PixelData[: len(dataset.PixelData) // frames]
        icon["PixelData"].VR = dataset["PixelData"].VR
    dataset.IconImageSequence = [icon]
    return write(dataset, target)


def with_trailing_bytes(source: Path, target: Path, tail: bytes) -> Path:
    """``source`` with ``tail`` appended after its last element."""
    target.write_bytes(source.read_bytes() + tail)
    return target


def with_zero_padding(source: Path, target: Path, size: int) -> Path:
    """``source`` followed by ``size`` zero bytes, written in chunks (megabytes of them)."""
    with target.open("wb") as out:
        out.write(source.read_bytes())
        chunk = bytes(min(size, 1 << 20))
        remaining = size
        while remaining:
            out.write(chunk[:remaining])
            remaining -= min(remaining, len(chunk))
    return target


def _explicit_element(tag: int, vr: bytes, value: bytes, undefined: bool = False) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV"):
        length = 0xFFFFFFFF if undefined else len(value)
        return struct.pack("<HH2sHL", group, element, vr, 0, length) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _implicit_element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def _with_private_block(blob: bytes, elements: Callable[[int], bytes]) -> bytes:
    """Splice a private block into an explicit VR little endian file: ``elements(group)``
    gives its raw elements for an odd group the file does not use yet, and they go before
    the first top-level element above that group, so tags stay in ascending order."""
    dataset = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    used = {element.tag.group for element in dataset}
    group = next(g for g in range(0x0009, 0x7FE0, 2) if g not in used)
    following = min(int(e.tag) for e in dataset if e.tag.group > group)
    head = struct.pack("<HH", following >> 16, following & 0xFFFF)
    meta_end = 132 + 12 + struct.unpack("<L", blob[140:144])[0]
    at = blob.index(head, meta_end)
    return blob[:at] + elements(group) + blob[at:]


def _implicit_private_sequence(group: int) -> bytes:
    base = group << 16
    item = _implicit_element(base | 0x1011, b"ABC ")
    item += _implicit_element(base | 0x1012, b"\x01\0\0\0")
    items = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + item
    items += struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return (_explicit_element(base | 0x0010, b"LO", b"ACME 1.1")
            + _explicit_element(base | 0x1010, b"UN", items, undefined=True))


def _odd_length_private(group: int) -> bytes:
    base = group << 16
    return (_explicit_element(base | 0x0010, b"LO", b"ACME 1.1")
            + _explicit_element(base | 0x1010, b"OB", b"\x01\x02\x03"))


def with_implicit_private_sequence(source: Path, target: Path) -> Path:
    """An explicit VR little endian file holding a private sequence encoded as UN with
    undefined length whose items are implicit VR (PS3.5 6.2.2), as Philips and GE write."""
    target.write_bytes(_with_private_block(source.read_bytes(), _implicit_private_sequence))
    return target


def with_odd_length_private(source: Path, target: Path) -> Path:
    """A private OB element of odd length, which some writers emit (PS3.5 7.1.1 says even)."""
    target.write_bytes(_with_private_block(source.read_bytes(), _odd_length_private))
    return target


def reencapsulated(source: Path, target: Path, offset_table: str) -> Path:
    """A multi-frame encapsulated file re-encapsulated with ``offset_table`` one of
    ``"empty"`` (no Basic Offset Table), ``"basic"`` or ``"extended"`` (PS3.5 A.4)."""
    dataset = read(source)
    frames = list(generate_frames(dataset.PixelData, number_of_frames=int(dataset.NumberOfFrames)))
    if offset_table == "extended":
        pixel_data, offsets, lengths = encapsulate_extended(frames)
        dataset.PixelData = pixel_data
        dataset.ExtendedOffsetTable = offsets
        dataset.ExtendedOffsetTableLengths = lengths
    else:
        dataset.PixelData = encapsulate(frames, has_bot=offset_table == "basic")
    return write(dataset, target)


def without_preamble(source: Path, target: Path) -> Path:
    """The file as some toolkits write it: data set (and meta) with no preamble or 'DICM'."""
    target.write_bytes(source.read_bytes()[132:])
    return target


def relabelled(source: Path, target: Path, transfer_syntax: str) -> Path:
    """``source`` with its TransferSyntaxUID replaced by one of the same encoding, e.g. a
    retired JPEG process over baseline JPEG fragments."""
    return edited(source, target,
                  lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", transfer_syntax))


def deflated(source: Path, target: Path) -> Path:
    """``source`` in Deflated Explicit VR Little Endian (a native file only)."""
    return relabelled(source, target, DeflatedExplicitVRLittleEndian)


# --- new object types, built with highdicom from real images ------------------------------


def ct_series(folder: Path, count: int = 4) -> list[Dataset]:
    """``count`` slices of one real CT (CT_small), as a series: new instance UIDs, and the
    slice position moved along the normal so highdicom sees a volume."""
    from pydicom.uid import generate_uid

    series_uid = generate_uid()
    slices = []
    for index in range(count):
        dataset = read(TEST_FILES / "CT_small.dcm")
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.SeriesInstanceUID = series_uid
        dataset.InstanceNumber = index + 1
        x, y, z = dataset.ImagePositionPatient
        dataset.ImagePositionPatient = [x, y, float(z) + 5.0 * index]
        write(dataset, folder / f"ct{index}.dcm")
        slices.append(read(folder / f"ct{index}.dcm"))
    return slices


def _device() -> dict[str, str]:
    return {"manufacturer": "pacs-validator tests", "manufacturer_model_name": "realworld",
            "software_versions": "1", "device_serial_number": "1"}


def segmentation(sources: list[Dataset], target: Path, fractional: bool) -> Path:
    """A Segmentation of ``sources`` with two segments: one frame per slice and segment."""
    import highdicom as hd
    import numpy as np
    from pydicom.sr.codedict import codes

    shape = (len(sources), sources[0].Rows, sources[0].Columns)
    mask = np.zeros((*shape, 2), dtype=np.float32 if fractional else np.uint8)
    mask[:, 10:60, 10:60, 0] = 0.5 if fractional else 1
    mask[:, 70:120, 70:120, 1] = 1
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=f"segment {number}",
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Bone,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask,
        segmentation_type=(hd.seg.SegmentationTypeValues.FRACTIONAL if fractional
                           else hd.seg.SegmentationTypeValues.BINARY),
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=10,
        sop_instance_uid=hd.UID(), instance_number=1, **_device(),
    )
    return write(seg, target)


def structured_report(sources: list[Dataset], target: Path, three_d: bool) -> Path:
    """A TID 1500 measurement report over ``sources``: Comprehensive SR, or Comprehensive 3D
    SR with a 3D region (SCOORD3D) that only the latter may hold."""
    import highdicom as hd
    import numpy as np
    from pydicom.sr.codedict import codes

    image = hd.sr.SourceImageForRegion.from_source_image(sources[0])
    if three_d:
        region = hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.array([[1.0, 2.0, 3.0]]),
            frame_of_reference_uid=sources[0].FrameOfReferenceUID)
    else:
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT,
                                   graphic_data=np.array([[10.0, 10.0]]), source_image=image)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="region 1"),
        referenced_region=region, finding_type=codes.SCT.Lesion)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                    name="Observer^Test"))),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group])
    document_class = hd.sr.Comprehensive3DSR if three_d else hd.sr.ComprehensiveSR
    document = document_class(
        evidence=sources, content=report[0], series_instance_uid=hd.UID(), series_number=20,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="pacs-validator tests")
    return write(document, target)


def key_object_selection(sources: list[Dataset], target: Path) -> Path:
    """A Key Object Selection document flagging ``sources`` "For Teaching"."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    document = hd.ko.KeyObjectSelectionDocument(
        evidence=sources,
        content=hd.ko.KeyObjectSelection(
            document_title=codes.DCM.ForTeaching,
            referenced_objects=sources),
        series_instance_uid=hd.UID(), series_number=30, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="pacs-validator tests")
    return write(document, target)


def presentation_state(sources: list[Dataset], target: Path) -> Path:
    """A Grayscale Softcopy Presentation State with a window over ``sources``."""
    import highdicom as hd

    state = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=sources, series_instance_uid=hd.UID(), series_number=40,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="pacs-validator tests",
        manufacturer_model_name="realworld", software_versions="1", device_serial_number="1",
        content_label="WINDOW",
        voi_lut_transformations=[hd.pr.SoftcopyVOILUTTransformation(
            window_center=40.0, window_width=400.0)])
    return write(state, target)


def parametric_map(sources: list[Dataset], target: Path) -> Path:
    """A float Parametric Map over ``sources``: one frame per slice."""
    import highdicom as hd
    import numpy as np
    from pydicom.sr.codedict import codes

    values = np.linspace(0, 1, len(sources) * sources[0].Rows * sources[0].Columns,
                         dtype=np.float32).reshape(len(sources), sources[0].Rows,
                                                   sources[0].Columns)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ADC", lut_explanation="apparent diffusion", unit=codes.UCUM.NoUnits,
        value_range=(0.0, 1.0), intercept=0.0, slope=1.0)
    pmap = hd.pm.ParametricMap(
        source_images=sources, pixel_array=values, series_instance_uid=hd.UID(),
        series_number=50, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="pacs-validator tests", manufacturer_model_name="realworld",
        software_versions="1", device_serial_number="1",
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)])
    return write(pmap, target)


def whole_slide_tiles(target: Path, tiles: int = 4) -> Path:
    """A VL Whole Slide Microscopy Image, TILED_FULL: a real JPEG baseline RGB frame
    (SC_rgb_jpeg_gdcm) repeated as the tiles of a total pixel matrix 2 tiles wide."""
    from pydicom.uid import generate_uid

    dataset = read(TEST_FILES / "SC_rgb_jpeg_gdcm.dcm")
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = (
        "1.2.840.10008.5.1.4.1.1.77.1.6")
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.Modality = "SM"
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    dataset.DimensionOrganizationType = "TILED_FULL"
    dataset.NumberOfFrames = tiles
    dataset.TotalPixelMatrixColumns = dataset.Columns * 2
    dataset.TotalPixelMatrixRows = dataset.Rows * ((tiles + 1) // 2)
    dataset.TotalPixelMatrixFocalPlanes = 1
    dataset.PixelData = encapsulate([frame] * tiles, has_bot=True)
    return write(dataset, target)
