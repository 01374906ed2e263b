"""Study-level rules over the instance results of one upload."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pacs_validator.dicom.study import Manifest, check_study, group_by_study


@pytest.fixture
def judge(validate, config):
    """``judge(paths, manifest=None, names=None)`` -> (instance results, StudyResult)."""

    def run(paths: list[Path], manifest: Manifest | None = None, names: list[str] | None = None):
        names = names or [str(p) for p in paths]
        results = [validate(p, name=n) for p, n in zip(paths, names, strict=True)]
        return results, check_study(results, config, manifest)

    return run


def study_rules(study) -> set[str]:
    return {f.rule for f in study.findings}


def one_study(corpus, folder: str = "98892001") -> list[Path]:
    files = corpus.study_files(folder)
    uids = {str(corpus.read(p, pixels=False).StudyInstanceUID) for p in files}
    assert len(uids) == 1  # 98892001 is one study of two CT series
    return files


def test_every_real_dicomdir_study_is_valid(corpus, judge):
    studies = corpus.studies()
    assert len(studies) >= 3
    for uid, files in studies.items():
        results, study = judge(files)
        assert all(r.status == 200 for r in results)
        assert study.status == 200, (uid, [f.to_dict() for f in study.findings])
        assert study.valid
        assert study.study_instance_uid == uid
        assert study.instance_count == len(files)
        assert not [f for f in study.findings if f.severity.value == "error"]


def test_group_by_study_matches_pydicoms_study_instance_uids(corpus, validate):
    files = [p for folder in ("77654033", "98892003") for p in corpus.study_files(folder)]
    groups = group_by_study(validate(p, name=str(p)) for p in files)
    expected: dict[str, set[str]] = {}
    for p in files:
        expected.setdefault(str(corpus.read(p, pixels=False).StudyInstanceUID), set()).add(str(p))
    assert {uid: {r.name for r in members} for uid, members in groups.items()} == expected


def test_files_of_two_studies_passed_together_are_mixed_studies(corpus, judge):
    studies = list(corpus.studies().values())
    results, study = judge([studies[0][0], studies[1][0]])
    assert all(r.status == 200 for r in results)
    assert study.status == 422
    assert "study.mixed-studies" in study_rules(study)
    assert study.study_instance_uid is None


def test_instance_with_a_different_patient_id_is_patient_mismatch(corpus, mutate, judge):
    first, second = one_study(corpus)[:2]
    other = mutate(second, lambda ds: setattr(ds, "PatientID", "SOMEONE-ELSE-42"))
    results, study = judge([first, other])
    assert [r.status for r in results] == [200, 200]  # each file is fine on its own
    assert study.status == 422
    mismatch = [f for f in study.findings if f.rule == "study.patient-mismatch"]
    assert [f.keyword for f in mismatch] == ["PatientID"]
    assert "SOMEONE-ELSE-42" not in mismatch[0].message


def test_instance_with_a_different_patient_name_is_patient_mismatch(corpus, mutate, judge):
    first, second = one_study(corpus)[:2]
    other = mutate(second, lambda ds: setattr(ds, "PatientName", "Roe^Richard"))
    _, study = judge([first, other])
    assert study.status == 422
    assert [f.keyword for f in study.findings if f.rule == "study.patient-mismatch"] == [
        "PatientName"
    ]


@pytest.mark.parametrize("spelling", ["Doe^Peter^^^", "Doe^Peter^^", "Doe^Peter=="])
def test_person_name_with_omitted_trailing_components_is_the_same_patient(spelling, corpus,
                                                                          mutate, judge):
    # PS3.5 6.2.1: trailing empty components (and component groups) may be omitted, so
    # modalities that write "Doe^Peter^^^" and "Doe^Peter" name the same patient.
    first, second = one_study(corpus)[:2]
    assert str(corpus.read(first, pixels=False).PatientName) == "Doe^Peter"
    other = mutate(second, lambda ds: setattr(ds, "PatientName", spelling))
    _, study = judge([first, other])
    assert "study.patient-mismatch" not in study_rules(study)
    assert study.status == 200


def test_differing_study_id_is_only_a_warning(corpus, mutate, judge):
    first, second = one_study(corpus)[:2]
    assert corpus.read(first, pixels=False).StudyID == "2"
    other = mutate(second, lambda ds: setattr(ds, "StudyID", "99"))
    _, study = judge([first, other])
    assert study.status == 200
    mismatch = [f for f in study.findings if f.rule == "study.attribute-mismatch"]
    assert [(f.keyword, f.severity.value) for f in mismatch] == [("StudyID", "warning")]


def test_same_file_twice_is_a_duplicate_warning_and_stays_valid(corpus, judge):
    path = one_study(corpus)[0]
    _, study = judge([path, path], names=["a.dcm", "b.dcm"])
    assert study.status == 200
    duplicate = [f for f in study.findings if f.rule == "study.duplicate-instance"]
    assert [f.severity.value for f in duplicate] == ["warning"]
    assert "study.instance-conflict" not in study_rules(study)


def test_a_large_study_sent_twice_is_one_counted_finding_per_kind_of_repeat(corpus, validate,
                                                                           config):
    result = validate(one_study(corpus)[0])
    resent = []
    for n in range(3000):  # every instance twice; the last 10 with other bytes the second time
        summary = dataclasses.replace(result.summary, sop_instance_uid=f"1.2.3.{n}")
        first = dataclasses.replace(result, name=f"{n}.dcm", summary=summary)
        again = dataclasses.replace(first, name=f"again/{n}.dcm",
                                    sha256="0" * 64 if n >= 2990 else first.sha256)
        resent += [first, again]
    study = check_study(resent, config)
    repeats = [f for f in study.findings
               if f.rule in ("study.duplicate-instance", "study.instance-conflict")]
    assert [(f.rule, f.message) for f in repeats] == [
        ("study.duplicate-instance", "2990 SOPInstanceUID(s) arrived more than once with "
         "identical bytes (5980 files in all)"),
        ("study.instance-conflict", "10 SOPInstanceUID(s) arrived more than once with "
         "different bytes (20 files in all)")]
    assert len(json.dumps([f.to_dict() for f in study.findings])) < 4096


def test_same_sop_instance_uid_with_different_bytes_is_instance_conflict(corpus, mutate,
                                                                         judge):
    path = one_study(corpus)[0]
    altered = mutate(path, lambda ds: setattr(ds, "ImageComments", "re-sent with changes"))
    results, study = judge([path, altered])
    assert results[0].summary.sop_instance_uid == results[1].summary.sop_instance_uid
    assert results[0].sha256 != results[1].sha256
    assert study.status == 422
    assert "study.instance-conflict" in study_rules(study)
    assert "study.duplicate-instance" not in study_rules(study)


def test_same_bytes_from_a_non_seekable_stream_are_still_a_duplicate(corpus, validate, config):
    path = one_study(corpus)[0]
    data = path.read_bytes()
    results = [validate(path, name="a.dcm"),
               validate(corpus.nonseekable(data), name="b.dcm")]
    study = check_study(results, config)
    assert "study.duplicate-instance" in study_rules(study)
    assert "study.instance-conflict" not in study_rules(study)


def test_modality_changed_in_one_instance_of_a_series_is_series_modality(corpus, mutate,
                                                                         judge):
    series = sorted((corpus.dicomdir_tests / "98892003" / "MR700").iterdir())
    assert len({str(corpus.read(p, pixels=False).SeriesInstanceUID) for p in series}) == 1
    changed = mutate(series[0], lambda ds: setattr(ds, "Modality", "OT"))
    results, study = judge([changed, *series[1:]])
    assert all(r.status == 200 for r in results)
    assert study.status == 422
    assert [f.keyword for f in study.findings if f.rule == "study.series-modality"] == [
        "Modality"
    ]


def test_different_modalities_in_different_series_are_fine(corpus, judge):
    # 77654033 holds CR and CT series, but of two different studies; within one study,
    # series may well differ in modality.
    files = one_study(corpus)
    _, study = judge(files)
    assert "study.series-modality" not in study_rules(study)


def test_manifest_naming_a_file_that_did_not_arrive_is_manifest_missing(corpus, judge):
    files = one_study(corpus)
    names = [p.name for p in files]
    _, study = judge(files, Manifest(names=(*names, "never-sent.dcm")), names=names)
    assert study.status == 422
    assert study_rules(study) == {"study.manifest-missing"}


def test_file_the_manifest_did_not_declare_is_manifest_unexpected(corpus, judge):
    files = one_study(corpus)
    names = [p.name for p in files]
    _, study = judge(files, Manifest(names=tuple(names[1:])), names=names)
    assert study.status == 422
    assert study_rules(study) == {"study.manifest-unexpected"}


def test_manifest_matching_the_received_files_is_valid(corpus, judge):
    files = one_study(corpus)
    names = [p.name for p in files]
    _, study = judge(files, Manifest(names=tuple(reversed(names))), names=names)
    assert study.status == 200
    _, by_count = judge(files, Manifest(count=len(files)), names=names)
    assert by_count.status == 200


@pytest.mark.parametrize(("delta", "rule"), [(1, "study.manifest-missing"),
                                             (-1, "study.manifest-unexpected")])
def test_manifest_count_differing_from_the_files_received(delta, rule, corpus, judge):
    files = one_study(corpus)
    _, study = judge(files, Manifest(count=len(files) + delta))
    assert study.status == 422
    assert rule in study_rules(study)


@pytest.mark.parametrize("delta", [1, -1])
def test_wrong_number_of_study_related_instances_is_instance_count(delta, corpus, mutate,
                                                                   judge):
    files = one_study(corpus)
    declared = len(files) + delta
    copies = [mutate(p, lambda ds: setattr(ds, "NumberOfStudyRelatedInstances", declared))
              for p in files]
    _, study = judge(copies)
    assert study.status == 422
    assert [f.keyword for f in study.findings if f.rule == "study.instance-count"] == [
        "NumberOfStudyRelatedInstances"
    ]


def test_right_number_of_study_related_instances_is_valid(corpus, mutate, judge):
    files = one_study(corpus)
    copies = [mutate(p, lambda ds: setattr(ds, "NumberOfStudyRelatedInstances", len(files)))
              for p in files]
    _, study = judge(copies)
    assert study.status == 200
    assert "study.instance-count" not in study_rules(study)


def test_study_status_is_the_worst_of_its_instances(corpus, mutate, judge):
    first, second = one_study(corpus)[:2]
    bad_date = mutate(second, lambda ds: setattr(ds, "StudyDate", "20231340"))
    results, study = judge([first, bad_date])
    assert [r.status for r in results] == [200, 422]
    assert study.status == 422
    assert not study.valid


def test_study_with_an_unreadable_file_is_400(corpus, write_bytes, judge):
    first = one_study(corpus)[0]
    cut = write_bytes(first.read_bytes()[:-1], "cut.dcm")
    _, study = judge([first, cut])
    assert study.status == 400


def test_instance_summary_fingerprints_carry_no_raw_values(corpus, validate):
    for path in [*one_study(corpus), corpus.path("CT_small.dcm"), corpus.path("rtplan.dcm")]:
        ds = corpus.read(path, pixels=False)
        summary = validate(path).summary
        assert set(summary.fingerprints) >= {"PatientID", "PatientName"}
        text = json.dumps(summary.to_dict())
        for keyword in ("PatientID", "PatientName", "PatientBirthDate"):
            value = str(ds.get(keyword) or "")
            if len(value) >= 3:
                assert value not in text, (path, keyword)
                assert value.upper() not in text, (path, keyword)
        for keyword, digest in summary.fingerprints.items():
            value = str(ds.get(keyword) or "").strip()
            assert value, (path, keyword)  # only attributes with a value are fingerprinted
            assert digest != value
            if len(value) >= 3:
                assert value not in digest, (path, keyword)


def test_fingerprints_are_salted_per_study(corpus, validate):
    # Doe^Peter (PatientID 98890234) has studies 98892001 and 98892003.
    a = validate(corpus.study_files("98892001")[0]).summary
    b = validate(corpus.study_files("98892003")[0]).summary
    assert a.study_instance_uid != b.study_instance_uid
    assert a.fingerprints["PatientID"] != b.fingerprints["PatientID"]
    same_study = validate(corpus.study_files("98892001")[1]).summary
    assert a.fingerprints["PatientID"] == same_study.fingerprints["PatientID"]
