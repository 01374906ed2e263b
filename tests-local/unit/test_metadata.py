"""metadata.json: values equal pydicom's own reading, absent is null, never invented."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pydicom
import pytest
import realworld
from crafted import with_raw_value
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pacs_validator.dicom.description import (
    DescribedInstance,
    build_metadata,
    described_again,
    dicom_json,
    head_of,
)
from pacs_validator.dicom.description import describe as describe_instance
from pacs_validator.dicom.metadata import metadata_map
from pacs_validator.dicom.validation import validate_instance

CHARSET_FILES = ["chrArab.dcm", "chrFren.dcm", "chrGerm.dcm", "chrGreek.dcm", "chrH31.dcm",
                 "chrH32.dcm", "chrHbrw.dcm", "chrI2.dcm", "chrJapMulti.dcm",
                 "chrKoreanMulti.dcm", "chrRuss.dcm", "chrX1.dcm", "chrX2.dcm"]


@pytest.fixture
def describe(config):
    """``describe(paths, study_id=None)`` -> the metadata document, built from what was read."""

    def run(paths: list[Path], study_id: str | None = None) -> dict:
        instances = []
        for path in paths:
            result, parsed = validate_instance(path, config, name=str(path))
            assert parsed.dataset is not None, path
            instances.append(DescribedInstance(
                dataset=parsed.dataset, size=result.size, sha256=result.sha256,
                transfer_syntax=result.summary.transfer_syntax,
                pixel_data=parsed.pixel_data, key=str(path)))
        return build_metadata(study_id, instances)

    return run


def expected_json(value):
    """How a pydicom value is expected to appear in JSON (None for absent or empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue):
        return [expected_json(v) for v in value]
    if type(value).__name__ == "IS":
        return int(value)
    if type(value).__name__ in ("DSfloat", "DSdecimal"):
        return float(value)
    return value if isinstance(value, int) else str(value)


def test_real_study_document_matches_pydicoms_reading_of_every_file(corpus, describe):
    for uid, files in corpus.studies().items():
        document = describe(files)
        datasets = {str(p): corpus.read(p) for p in files}
        first = next(iter(datasets.values()))
        assert document["study_id"] == uid
        assert document["study"]["instance_uid"] == uid
        assert document["patient"]["id"] == first.PatientID
        assert document["patient"]["name"] == str(first.PatientName)
        assert document["study"]["date"] == first.StudyDate
        series_uids = {str(ds.SeriesInstanceUID) for ds in datasets.values()}
        assert document["counts"] == {"series": len(series_uids), "instances": len(files)}
        assert {s["instance_uid"] for s in document["series"]} == series_uids
        seen = 0
        for series in document["series"]:
            for entry in series["instances"]:
                path = Path(entry["key"])
                ds = datasets[entry["key"]]
                data = path.read_bytes()
                assert entry["sha256"] == hashlib.sha256(data).hexdigest()
                assert entry["size"] == len(data)
                assert entry["sop_instance_uid"] == ds.SOPInstanceUID
                assert entry["sop_class_uid"] == ds.SOPClassUID
                assert entry["instance_number"] == int(ds.InstanceNumber)
                assert entry["rows"] == ds.Rows
                assert entry["columns"] == ds.Columns
                assert entry["frames"] == 1  # no NumberOfFrames, pixel data present
                assert entry["transfer_syntax"] == ds.file_meta.TransferSyntaxUID
                assert ds.SeriesInstanceUID == series["instance_uid"]
                assert series["modality"] == ds.Modality
                seen += 1
        assert seen == len(files)


def test_instances_of_a_series_are_ordered_by_instance_number(corpus, describe):
    files = sorted((corpus.dicomdir_tests / "98892003" / "MR700").iterdir())
    document = describe(files)
    numbers = [e["instance_number"] for e in document["series"][0]["instances"]]
    assert numbers == sorted(numbers)
    assert len(numbers) == len(files)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm",
                                  "examples_palette.dcm", "waveform_ecg.dcm", "JPEG2000.dcm"])
def test_every_mapped_field_is_pydicoms_value_or_null(name, corpus, describe):
    path = corpus.path(name)
    ds = corpus.read(path, pixels=False)
    document = describe([path])
    mapping = metadata_map()
    for section in ("patient", "study", "equipment", "exposure", "institution"):
        for field, keyword in mapping[section].items():
            assert document[section][field] == expected_json(ds.get(keyword)), (section, field)
    series = document["series"][0]
    for field, keyword in mapping["series"].items():
        assert series[field] == expected_json(ds.get(keyword)), field


def test_deleted_institution_name_is_null(corpus, mutate, describe):
    original = describe([corpus.path("CT_small.dcm")])
    assert original["institution"]["name"] == corpus.read(
        corpus.path("CT_small.dcm"), pixels=False).InstitutionName
    document = describe([mutate("CT_small.dcm", lambda ds: delattr(ds, "InstitutionName"))])
    assert document["institution"]["name"] is None


def test_emptied_attribute_is_null_not_an_empty_string(corpus, mutate, describe):
    document = describe([mutate("CT_small.dcm", lambda ds: setattr(ds, "StationName", ""))])
    assert document["equipment"]["station_name"] is None


def test_multi_valued_element_is_a_json_list(corpus, describe):
    path = corpus.path("examples_palette.dcm")
    versions = corpus.read(path, pixels=False).SoftwareVersions
    assert isinstance(versions, MultiValue)
    assert len(versions) > 1
    document = describe([path])
    assert document["equipment"]["software_versions"] == [str(v) for v in versions]


def test_person_name_is_a_string(corpus, describe):
    document = describe([corpus.path("rtplan.dcm")])
    assert document["patient"]["name"] == "Last^First^mid^pre"
    assert isinstance(document["patient"]["name"], str)


def test_numbers_stay_numbers(corpus, describe):
    path = corpus.path("CT_small.dcm")
    ds = corpus.read(path, pixels=False)
    document = describe([path])
    assert document["exposure"]["kvp"] == float(ds.KVP)
    assert isinstance(document["exposure"]["kvp"], float)
    assert document["series"][0]["number"] == int(ds.SeriesNumber)
    assert isinstance(document["series"][0]["instances"][0]["rows"], int)


@pytest.mark.parametrize("name", CHARSET_FILES)
def test_patient_name_in_a_specific_character_set_is_decoded_unicode(name, corpus, describe):
    path = corpus.path(name)
    expected = str(corpus.read(path, pixels=False).PatientName)
    assert any(ord(c) > 127 for c in expected)  # the premise: really not ASCII
    document = describe([path])
    assert document["patient"]["name"] == expected
    assert json.loads(json.dumps(document, ensure_ascii=False))["patient"]["name"] == expected


def test_frames_come_from_number_of_frames_or_default_to_one(corpus, describe):
    two = describe([corpus.path("SC_rgb_rle_2frame.dcm")])["series"][0]["instances"][0]
    assert two["frames"] == 2
    one = describe([corpus.path("MR_small.dcm")])["series"][0]["instances"][0]
    assert one["frames"] == 1
    ecg = describe([corpus.path("waveform_ecg.dcm")])["series"][0]["instances"][0]
    assert ecg["frames"] is None  # no pixel data: there is no frame count to state
    assert ecg["rows"] is None


def test_document_is_json_serialisable_and_round_trips(corpus, describe):
    files = corpus.study_files("98892003")
    document = describe(files)
    text = json.dumps(document)
    assert json.loads(text) == document
    assert set(document) >= {"schema_version", "study_id", "patient", "study", "equipment",
                             "exposure", "institution", "series"}
    assert set(document["patient"]) >= {"id", "name", "birth_date", "sex"}
    assert set(document["series"][0]["instances"][0]) >= {
        "sop_instance_uid", "sop_class_uid", "instance_number", "rows", "columns", "frames",
        "transfer_syntax", "size", "sha256", "key"}


def test_study_id_given_is_kept(corpus, describe):
    assert describe([corpus.path("MR_small.dcm")], study_id="upload-7")["study_id"] == "upload-7"


def test_metadata_of_no_instances_is_refused():
    with pytest.raises(ValueError):
        build_metadata(None, [])


def test_dicom_json_sidecar_round_trips_values_and_refers_to_bulk_data(corpus, config):
    path = corpus.path("CT_small.dcm")
    result, parsed = validate_instance(path, config)
    instance = DescribedInstance.of(result, parsed, key=None)
    assert instance is not None
    sidecar = dicom_json(instance, bulk_data_uri="studies/x/original.dcm")

    original = corpus.read(path, pixels=False)
    text = json.dumps(sidecar)
    restored = Dataset.from_json({k: v for k, v in json.loads(text).items()
                                  if "BulkDataURI" not in v})
    assert restored.PatientID == original.PatientID
    assert restored.StudyInstanceUID == original.StudyInstanceUID
    assert restored.ImagePositionPatient == original.ImagePositionPatient
    assert sidecar["7FE00010"] == {"vr": "OW", "BulkDataURI": "studies/x/original.dcm#7FE00010"}
    large_binary = [e for e in original if e.VR in ("OB", "OW", "UN") and len(e.value) > 1024]
    assert large_binary, "CT_small has a large private binary value"
    for element in large_binary:
        assert sidecar[f"{element.tag:08X}"]["BulkDataURI"].endswith(f"#{element.tag:08X}")


def test_dicom_json_sidecar_keeps_decoded_person_names(corpus, config):
    path = Path(pydicom.__file__).parent / "data" / "charset_files" / "chrRuss.dcm"
    result, parsed = validate_instance(path, config)
    instance = DescribedInstance.of(result, parsed, key=None)
    assert instance is not None
    name = dicom_json(instance, bulk_data_uri="x")["00100010"]["Value"][0]["Alphabetic"]
    assert name == str(pydicom.dcmread(path).PatientName)


def described_every_way(path: Path, config, tmp_path: Path) -> tuple[tuple, ...]:
    """The description and DICOM JSON of a valid file as validation read it, as storing
    reads them again from the file's head alone (the whole file when it has no head), and
    as storing reads them when the file is its series' preview: from the whole file, unless
    it has no pixel data (then from its head, which stops before any trailing padding)."""
    result, parsed = validate_instance(path, config)
    assert result.status == 200, (path, [f.to_dict() for f in result.findings])
    at_validation = DescribedInstance.of(result, parsed, key="studies/s/i.dcm")
    assert at_validation is not None
    head = head_of(parsed)
    data = path.read_bytes()
    copy = tmp_path / f"head-{path.name}"
    copy.write_bytes(data if head is None else data[:head["bytes"]])
    again = [described_again(source, head, size=result.size, sha256=result.sha256,
                             transfer_syntax=result.summary.transfer_syntax, config=config,
                             key="studies/s/i.dcm")
             for source in (copy, path if head is None or "pixel_tag" in head else copy)]
    return tuple((describe_instance(instance).to_dict(), dicom_json(instance, instance.key or ""))
                 for instance in (at_validation, *again))


def test_every_valid_corpus_file_is_described_the_same_from_its_head(corpus, config, tmp_path):
    """Storing reads a valid instance's head (its bytes before the pixel data's value) and
    describes it from that alone: the same metadata entry and DICOM JSON as validation's
    whole read, for every file of pydicom's corpus that validates."""
    compared = 0
    for path in corpus.all_files():
        result, parsed = validate_instance(path, config)
        if result.status != 200:
            continue
        head = head_of(parsed)
        if head is not None and "pixel_tag" in head:
            assert head["bytes"] < path.stat().st_size, path
        at_validation, from_head, from_whole = described_every_way(path, config, tmp_path)
        assert from_head == at_validation == from_whole, path
        compared += 1
    assert compared >= 70


@pytest.mark.parametrize("shape", ["zero-padding", "deflated", "encapsulated-icon",
                                   "segmentation", "structured-report", "parametric-map",
                                   "whole-slide"])
def test_reshaped_and_highdicom_built_files_are_described_the_same_from_their_head(
        shape, corpus, config, tmp_path):
    """The shapes where a head is not simply the bytes before the pixel data: trailing
    padding, a deflated data set (read whole), pixel data inside a sequence item, and
    objects highdicom builds (large functional group sequences, no pixel data, tiles)."""
    ct = corpus.path("CT_small.dcm")
    folder = tmp_path / "built"
    folder.mkdir()
    if shape == "zero-padding":  # after the last element of a file without pixel data
        report = realworld.structured_report(realworld.ct_series(folder), folder / "sr.dcm",
                                             False)
        path = realworld.with_zero_padding(report, folder / "padded.dcm", 4096)
    elif shape == "deflated":
        path = realworld.deflated(ct, folder / "deflated.dcm")
    elif shape == "encapsulated-icon":
        seg = realworld.segmentation(realworld.ct_series(folder), folder / "seg.dcm", True)
        path = realworld.with_icon(seg, folder / "seg-icon.dcm")
    elif shape == "segmentation":
        path = realworld.segmentation(realworld.ct_series(folder), folder / "seg.dcm", False)
    elif shape == "structured-report":
        path = realworld.structured_report(realworld.ct_series(folder), folder / "sr.dcm", True)
    elif shape == "parametric-map":
        path = realworld.parametric_map(realworld.ct_series(folder), folder / "pm.dcm")
    else:
        path = realworld.whole_slide_tiles(folder / "wsi.dcm", 16)
    at_validation, from_head, from_whole = described_every_way(path, config, tmp_path)
    assert from_head == at_validation == from_whole


LONG_SEQUENCE_CREATOR = "PACS VALIDATOR TEST"


def with_long_sequence(dataset: Dataset) -> None:
    """A private sequence of 2000 items, over ``defer_size``: the read defers it."""
    items = []
    for index in range(2000):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = f"C{index}", "99TEST"
        items.append(item)
    block = dataset.private_block(0x0011, LONG_SEQUENCE_CREATOR, create=True)
    block.add_new(0x01, "SQ", items)


def long_sequence_item(dataset: Dataset) -> Dataset:
    """The 1000th item of :func:`with_long_sequence`'s sequence."""
    item: Dataset = dataset.private_block(0x0011, LONG_SEQUENCE_CREATOR)[0x01].value[999]
    return item


def long_sequence_json(document: dict) -> dict:
    """:func:`with_long_sequence`'s sequence in a DICOM JSON document."""
    [sequence] = [element for tag, element in document.items()
                  if tag.startswith("0011") and element["vr"] == "SQ"]
    return sequence


def test_a_sequence_the_read_deferred_is_given_whole_in_the_dicom_json(mutate, config, tmp_path):
    """pydicom defers a sequence of a defined length over ``defer_size`` as it defers a
    blob, but PS3.18 has no BulkDataURI for a sequence: its items are given, from the head
    as from validation's read."""
    path = mutate("CT_small.dcm", with_long_sequence)
    (_, at_validation), (_, again), _ = described_every_way(path, config, tmp_path)
    assert again == at_validation
    sequence = long_sequence_json(at_validation)
    assert len(sequence["Value"]) == 2000
    assert sequence["Value"][1999]["00080100"]["Value"] == ["C1999"]


@pytest.mark.parametrize("in_a_deferred_sequence", [False, True])
def test_a_value_of_no_whole_number_of_values_is_described_empty_every_way(
        in_a_deferred_sequence, mutate, config, tmp_path):
    """Issue 31: an FD of 12 bytes (pydicom raises BytesLengthException on reading it) in a
    file that validates with a ``value.other-vr-length`` warning: its description and DICOM
    JSON, from validation's read, the head and the whole file, give the element present and
    empty. Inside a sequence the read defers, validation never decoded it, and the DICOM
    JSON raised (the descriptor failed with a 500)."""
    if in_a_deferred_sequence:
        source, where = mutate("CT_small.dcm", with_long_sequence), long_sequence_item
    else:
        source, where = "CT_small.dcm", (lambda dataset: dataset)
    path = mutate(source, with_raw_value(where, "SingleCollimationWidth", "FD", bytes(12)))
    result, _ = validate_instance(path, config)
    assert [(f.rule, f.keyword) for f in result.findings
            if f.severity.value == "warning"] == [("value.other-vr-length",
                                                   "SingleCollimationWidth")]
    (_, at_validation), (_, from_head), (_, from_whole) = described_every_way(path, config,
                                                                              tmp_path)
    assert from_head == at_validation == from_whole
    if in_a_deferred_sequence:
        items = long_sequence_json(at_validation)["Value"]
        assert items[999]["00189306"] == {"vr": "FD"}
        assert items[998] == {"00080100": {"vr": "SH", "Value": ["C998"]},
                              "00080102": {"vr": "SH", "Value": ["99TEST"]}}
    else:
        assert at_validation["00189306"] == {"vr": "FD"}


def test_a_file_recorded_without_its_head_is_described_from_the_whole_file(corpus, config):
    """A chunk planned before records kept heads (a study in flight through a deploy) has
    neither the head nor the transfer syntax: the whole file is read, as validation did."""
    path = corpus.path("MR_small.dcm")
    result, parsed = validate_instance(path, config)
    at_validation = DescribedInstance.of(result, parsed, key="studies/s/mr.dcm")
    assert at_validation is not None
    again = described_again(path, None, size=result.size, sha256=result.sha256,
                            transfer_syntax=None, config=config, key="studies/s/mr.dcm")
    assert describe_instance(again) == describe_instance(at_validation)
    assert describe_instance(again).entry["transfer_syntax"] == \
        str(parsed.dataset.file_meta.TransferSyntaxUID)
