"""The ``pacs-validator`` command line: exit codes and the JSON report's contract."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from document_schemas import METADATA, VALIDATION_REPORT, check

from pacs_validator.cli.main import main
from pacs_validator.dicom.rules import LOCATION_FIELDS

FILE_KEYS = {"path", "study_instance_uid", "valid", "status", "findings"}
STUDY_KEYS = {"study_instance_uid", "valid", "status", "findings"}
FINDING_KEYS = {"rule", "severity", "status", "tag", "keyword", "message"}


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    """The command's exit code and JSON, the JSON held to the package's schema for it: the
    validation report (validate), metadata.json (describe: one document, or one a study)."""
    code = main([*argv])
    out = capsys.readouterr().out
    document = json.loads(out)
    if argv[0] == "validate":
        check(VALIDATION_REPORT, document, "validate --json")
    else:
        for described in document if isinstance(document, list) else [document]:
            check(METADATA, described, "describe --json")
    return code, document


def copy_study(corpus, folder: str, target: Path) -> Path:
    shutil.copytree(corpus.dicomdir_tests / folder, target)
    return target


def test_valid_study_folder_exits_0(corpus, capsys):
    assert main(["validate", str(corpus.dicomdir_tests / "98892001")]) == 0
    out = capsys.readouterr().out
    assert "INVALID" not in out


def test_folder_with_an_invalid_file_exits_1(corpus, tmp_path, capsys):
    folder = copy_study(corpus, "98892001", tmp_path / "study")
    one = next(p for p in folder.rglob("*") if p.is_file())
    (folder / "cut.dcm").write_bytes(one.read_bytes()[:-1])
    assert main(["validate", str(folder)]) == 1
    assert "INVALID 400" in capsys.readouterr().out


def test_single_invalid_file_exits_1(corpus, capsys):
    assert main(["validate", str(corpus.path("MR_truncated.dcm"))]) == 1


def test_missing_path_exits_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_empty_folder_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["validate", str(tmp_path / "empty")]) == 2


@pytest.mark.parametrize("document", ['{"no_such_key": 1}', "{not json",
                                      '{"rules": {"nope.rule": {"enabled": false}}}'])
def test_bad_config_exits_2(document, corpus, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(document)
    assert main(["validate", "--config", str(config), str(corpus.path("MR_small.dcm"))]) == 2


def test_config_file_changes_the_verdict(corpus, tmp_path, capsys):
    liver = str(corpus.path("liver_1frame.dcm"))
    assert main(["validate", liver]) == 0
    config = tmp_path / "strict.json"
    # NumberOfFrames, Type 1, is missing: the engine's rule, or the IOD table's without it
    config.write_text(json.dumps({"rules": {"iod.type1": {"severity": "error"},
                                            "conformance.missing-type1": {"severity": "error"}}}))
    assert main(["validate", "--config", str(config), liver]) == 1


def test_json_report_has_exactly_the_contract_shape(corpus, tmp_path, capsys):
    folder = copy_study(corpus, "77654033", tmp_path / "study")
    (folder / "notes.txt").write_text("not dicom")
    (folder / "junk.bin").write_bytes(b"\x00\x01junk" * 50)
    code, report = run_json(capsys, "validate", "--json", str(folder))
    assert code == 1
    assert set(report) == {"files", "studies", "skipped"}
    assert report["skipped"] == [{"path": str(folder / "notes.txt"),
                                  "reason": "a text file, not DICOM: not judged"}]
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".txt")
    assert sorted(f["path"] for f in report["files"]) == sorted(str(p) for p in files)
    for entry in report["files"]:
        assert set(entry) == FILE_KEYS
        assert entry["valid"] is (entry["status"] == 200)
        for finding in entry["findings"]:
            assert FINDING_KEYS <= set(finding) <= FINDING_KEYS | set(LOCATION_FIELDS)
    text = next(f for f in report["files"] if f["path"].endswith("junk.bin"))
    assert (text["status"], text["valid"]) == (400, False)
    assert [f["rule"] for f in text["findings"]] == ["format.preamble"]
    # 77654033 holds two studies (CR and CT): the unreadable junk file belongs to neither.
    uids = {str(corpus.read(p, pixels=False).StudyInstanceUID) for p in files
            if p.suffix != ".bin"}
    assert {s["study_instance_uid"] for s in report["studies"]} == uids
    assert {f["study_instance_uid"] for f in report["files"]} == uids | {None}
    for study in report["studies"]:
        assert set(study) >= STUDY_KEYS
        assert study["valid"] is True and study["status"] == 200


def test_file_status_reflects_its_own_rules_and_study_status_the_study(corpus, tmp_path,
                                                                       capsys):
    folder = copy_study(corpus, "98892001", tmp_path / "study")
    victim = sorted(p for p in folder.rglob("*") if p.is_file())[0]
    dataset = corpus.read(victim)
    dataset.PatientID = "SOMEONE-ELSE-42"
    corpus.write(dataset, victim)
    code, report = run_json(capsys, "validate", "--json", str(folder))
    assert code == 1
    assert [f["status"] for f in report["files"]] == [200] * len(report["files"])
    assert all(f["valid"] for f in report["files"])
    [study] = report["studies"]
    assert (study["status"], study["valid"]) == (422, False)
    assert "study.patient-mismatch" in [f["rule"] for f in study["findings"]]
    assert "SOMEONE-ELSE-42" not in json.dumps(report)


def test_json_report_of_a_valid_study_exits_0(corpus, capsys):
    code, report = run_json(capsys, "validate", "--json",
                            str(corpus.dicomdir_tests / "98892003"))
    assert code == 0
    assert len(report["files"]) == len(corpus.study_files("98892003"))
    assert all(f["status"] == 200 for f in report["files"])


def test_describe_json_prints_the_metadata_document(corpus, capsys):
    folder = corpus.dicomdir_tests / "98892001"
    code, document = run_json(capsys, "describe", "--json", str(folder))
    assert code == 0
    files = corpus.study_files("98892001")
    first = corpus.read(files[0], pixels=False)
    assert document["study_id"] == first.StudyInstanceUID
    assert document["patient"]["id"] == first.PatientID
    instances = [i for s in document["series"] for i in s["instances"]]
    assert len(instances) == len(files)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert {i["sha256"] for i in instances} == digests


def test_describe_of_a_folder_with_several_studies_prints_a_list(corpus, capsys):
    code, documents = run_json(capsys, "describe", "--json",
                               str(corpus.dicomdir_tests / "77654033"))
    assert code == 0
    assert isinstance(documents, list)
    assert len(documents) == 2  # the CR study and the CT study


def test_describe_of_only_unreadable_files_exits_1(corpus, capsys):
    assert main(["describe", "--json", str(corpus.path("MR_truncated.dcm"))]) == 1


def test_text_output_names_each_file_and_study(corpus, capsys):
    assert main(["validate", str(corpus.path("CT_small.dcm"))]) == 0
    out = capsys.readouterr().out
    assert "VALID   200" in out
    assert "CT_small.dcm" in out


def _charset_swapped_to_us(source: Path) -> bytes:
    """A real file whose SpecificCharacterSet VR is swapped to US: it crashed the whole run
    (pydicom's TypeError) before every exception became a finding."""
    blob = source.read_bytes()
    at = blob.index(b"\x08\x00\x05\x00CS") + 4
    return blob[:at] + b"US" + blob[at + 2:]


def test_folder_with_an_input_that_used_to_crash_reports_every_file(corpus, tmp_path, capsys):
    folder = copy_study(corpus, "98892001", tmp_path / "study")
    (folder / "swapped.dcm").write_bytes(_charset_swapped_to_us(corpus.path("chrHbrw.dcm")))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    code, report = run_json(capsys, "validate", "--json", str(folder))
    assert code == 1
    assert sorted(f["path"] for f in report["files"]) == sorted(map(str, files))
    by_path = {f["path"]: f for f in report["files"]}
    assert by_path[str(folder / "swapped.dcm")]["status"] == 400
    assert [s["status"] for s in report["studies"]] == [200]


def test_a_check_that_raises_is_a_500_for_that_file_only(corpus, tmp_path, capsys, monkeypatch):
    """The last-resort guard: an exception escaping a check answers 500 internal.error for
    that file, naming the exception type and no value of the file."""
    from pacs_validator.dicom import validation

    folder = copy_study(corpus, "98892001", tmp_path / "study")
    victim = sorted(p for p in folder.rglob("*") if p.is_file())[0]
    patient_id = str(corpus.read(victim).PatientID)

    def check_modality(dataset, config, findings):
        if dataset.filename == str(victim):
            raise ValueError(f"cannot handle {patient_id}")

    checks = tuple(check_modality if c.__name__ == "check_modality" else c
                   for c in validation.DATASET_CHECKS)
    monkeypatch.setattr(validation, "DATASET_CHECKS", checks)
    code, report = run_json(capsys, "validate", "--json", str(folder))
    assert code == 1
    by_path = {f["path"]: f for f in report["files"]}
    failed = by_path.pop(str(victim))
    assert failed["status"] == 500
    internal = [f for f in failed["findings"] if f["rule"] == "internal.error"]
    assert [f["message"] for f in internal] == ["validation failed with ValueError"]
    assert all(patient_id not in json.dumps(f) for f in failed["findings"])
    assert {f["status"] for f in by_path.values()} == {200}


def test_describe_writes_a_preview_per_series_and_lists_it(corpus, tmp_path, capsys):
    folder = corpus.dicomdir_tests / "98892003"
    code, documents = run_json(capsys, "describe", str(folder), "--json",
                               "--previews", str(tmp_path / "previews"))

    assert code == 0
    document = max(documents, key=lambda d: d["counts"]["instances"])
    for series in document["series"]:
        assert series["preview"] == str(tmp_path / "previews" / f"{series['instance_uid']}.png")
        assert Path(series["preview"]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_describe_without_previews_lists_none(corpus, capsys):
    code, document = run_json(capsys, "describe", str(corpus.path("CT_small.dcm")), "--json")

    assert code == 0
    assert [series["preview"] for series in document["series"]] == [None]
