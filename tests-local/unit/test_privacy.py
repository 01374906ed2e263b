"""Findings name attributes, never their values: they go into logs, events and the status API."""

from __future__ import annotations

import pytest

from pacs_validator.dicom.study import check_study


def leaks(corpus, findings, dataset) -> list[tuple[str, str]]:
    return [(f.rule, value) for f in findings for value in corpus.patient_values(dataset)
            if value in f.message or value.upper() in f.message]


def test_no_finding_of_any_corpus_file_quotes_a_patient_value(corpus, validate):
    checked = 0
    for path in corpus.all_files():
        dataset = corpus.read(path, pixels=False)
        result = validate(path)
        assert not leaks(corpus, result.findings, dataset), path
        checked += bool(corpus.patient_values(dataset) and result.findings)
    assert checked >= 20  # many files have both patient values and findings


PHI_MUTATIONS = {
    # Each makes a rule fire on the very attribute that holds the patient value.
    "PatientID too long": lambda ds: setattr(ds, "PatientID", "PID-" + "7" * 70),
    "PatientID two values": lambda ds: setattr(ds, "PatientID", ["PIDAAA111", "PIDBBB222"]),
    "PatientName group too long": lambda ds: setattr(ds, "PatientName",
                                                     "Smithsonian" * 7 + "^Jonathan"),
    "PatientBirthDate impossible": lambda ds: setattr(ds, "PatientBirthDate", "19871332"),
    "PatientBirthDate with dashes": lambda ds: setattr(ds, "PatientBirthDate", "1987-11-30"),
    "PatientID emptied, name kept": lambda ds: setattr(ds, "PatientID", ""),
    "StudyDate impossible": lambda ds: setattr(ds, "StudyDate", "20231340"),
}


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "rtplan.dcm"])
@pytest.mark.parametrize("mutation", PHI_MUTATIONS)
def test_findings_on_patient_attributes_do_not_quote_them(name, mutation, corpus, mutate,
                                                          validate):
    path = mutate(name, PHI_MUTATIONS[mutation])
    dataset = corpus.read(path, pixels=False)
    result = validate(path)
    keyword = mutation.split()[0]  # the attribute each mutation damages
    assert keyword in {f.keyword for f in result.findings}  # the mutation is caught ...
    assert not leaks(corpus, result.findings, dataset)  # ... without repeating the value
    if dataset.get("StudyDate") == "20231340":
        assert all("20231340" not in f.message for f in result.findings)


def test_study_findings_do_not_quote_patient_values(corpus, mutate, validate, config):
    first, second = corpus.study_files("98892001")[:2]

    def other_patient(ds):
        ds.PatientID = "OTHERPATIENT77"
        ds.PatientName = "Roe^Richard"
        ds.PatientBirthDate = "19600101"

    changed = mutate(second, other_patient)
    study = check_study([validate(first), validate(changed)], config)
    assert study.status == 422
    for path in (first, changed):
        assert not leaks(corpus, study.findings, corpus.read(path, pixels=False))


def test_the_patient_value_guard_used_by_every_validation_catches_a_leak(corpus):
    """The ``validate`` fixture runs this guard on every file it validates: it must bite."""
    from pacs_validator.dicom.rules import Finding, Severity

    path = corpus.path("MR_small.dcm")
    name = str(corpus.read(path, pixels=False).PatientName)
    leaky = Finding(rule="value.vr-length", severity=Severity.ERROR, status=422,
                    message=f"PatientName {name} is too long")
    with pytest.raises(AssertionError):
        corpus.assert_no_patient_values([leaky], path)
    clean = Finding(rule="value.vr-length", severity=Severity.ERROR, status=422,
                    message="PatientName is longer than VR PN allows")
    corpus.assert_no_patient_values([clean], path)


def test_pydicom_warnings_while_reading_are_counted_never_quoted(
    mutate, config, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    recwarn: pytest.WarningsRecorder,
):
    """pydicom warns (and logs) on odd values while a file is read, some messages quoting the
    value; none of that may reach logs, stdout or stderr: only a count by kind."""
    import logging

    from pacs_validator.dicom.validation import validate_instance

    def odd_values(ds):
        ds.StationName = "STATIONSECRET" + "X" * 51  # SH: "The value length (64) exceeds..."
        ds.SeriesInstanceUID = "1.2.UIDSECRET.3"  # UI: "Invalid value for VR UI: '1.2...'"

    path = mutate("CT_small.dcm", odd_values)
    capsys.readouterr()
    caplog.clear()
    recwarn.clear()
    caplog.set_level(logging.DEBUG)
    result, _ = validate_instance(path, config)

    assert "value.uid" in {f.rule for f in result.findings}
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    warned = " ".join(str(w.message) for w in recwarn)
    for secret in ("STATIONSECRET", "UIDSECRET"):
        assert secret not in logged
        assert secret not in warned
    counted = [r for r in caplog.records if r.name == "pacs_validator.dicom.library_messages"]
    assert len(counted) == 1
    assert counted[0].pydicom_messages["warning.UserWarning"] >= 2
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
