"""The ``pacs-validator`` command line: exit codes and the JSON report's contract."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pacs_validator.cli import main

FILE_KEYS = {"path", "valid", "status", "findings"}
STUDY_KEYS = {"study_instance_uid", "valid", "status", "findings"}
FINDING_KEYS = {"rule", "severity", "status", "tag", "keyword", "message"}


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main([*argv])
    out = capsys.readouterr().out
    return code, json.loads(out)


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
    config.write_text(json.dumps({"rules": {"iod.type1": {"severity": "error"}}}))
    assert main(["validate", "--config", str(config), liver]) == 1


def test_json_report_has_exactly_the_contract_shape(corpus, tmp_path, capsys):
    folder = copy_study(corpus, "77654033", tmp_path / "study")
    (folder / "notes.txt").write_text("not dicom")
    code, report = run_json(capsys, "validate", "--json", str(folder))
    assert code == 1
    assert set(report) == {"files", "studies"}
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert sorted(f["path"] for f in report["files"]) == sorted(str(p) for p in files)
    for entry in report["files"]:
        assert set(entry) == FILE_KEYS
        assert entry["valid"] is (entry["status"] == 200)
        for finding in entry["findings"]:
            assert set(finding) == FINDING_KEYS
    text = next(f for f in report["files"] if f["path"].endswith("notes.txt"))
    assert (text["status"], text["valid"]) == (400, False)
    assert [f["rule"] for f in text["findings"]] == ["format.preamble"]
    # 77654033 holds two studies (CR and CT): the unreadable text file belongs to neither.
    uids = {str(corpus.read(p, pixels=False).StudyInstanceUID) for p in files
            if p.suffix != ".txt"}
    assert {s["study_instance_uid"] for s in report["studies"]} == uids
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
