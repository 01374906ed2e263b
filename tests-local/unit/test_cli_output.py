"""What the command line prints for people: counted warnings, totals, study labels, skipped
DICOMDIRs and pipes, unreadable files, closed pipes, and the help and hints."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pacs_validator.cli import common, progress
from pacs_validator.cli.main import main
from pacs_validator.cli.report import TIMES, merged
from pacs_validator.cli.status import print_status
from pacs_validator.dicom.config import build_config
from pacs_validator.dicom.validation import is_media_directory, is_text_file, validate_instance
from pacs_validator.transfer.client import ApiError, PacsClient

COMMAND = [sys.executable, "-m", "pacs_validator.cli.main"]
TOTALS = re.compile(r"^\d+ files?: \d+ valid, \d+ invalid, \d+ skipped · "
                    r"\d+ stud(y|ies): \d+ valid, \d+ invalid$")


def run_text(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main([*argv])
    return code, capsys.readouterr().out.splitlines()


def test_validate_counts_warnings_by_study_and_rule_and_ends_with_totals(corpus, capsys):
    code, lines = run_text(capsys, "validate", str(corpus.dicomdir_tests))
    assert code == 1
    assert lines[-1] == ("91 files: 31 valid, 50 invalid, 10 skipped · "
                         "7 studies: 6 valid, 1 invalid")
    assert not [line for line in lines if line.lstrip().startswith("warning ")]
    # The 11-instance MR study: one line for the Type 2C attribute each of its files lacks.
    brain_mra = lines.index(next(line for line in lines if '"Brain-MRA"' in line))
    assert lines[brain_mra].endswith(
        f'(11 instance(s)) in {corpus.dicomdir_tests / "98892003"}, "Brain-MRA", 2003-05-05')
    counted = lines[brain_mra + 1:brain_mra + 4]
    assert f"11 {TIMES} conformance.missing-type2c" in [line.strip() for line in counted]
    # Errors are listed under their file.
    alpha = lines.index(next(line for line in lines if line.startswith("INVALID 422 ")
                             and "TINY_ALPHA" in line))
    assert "pixel.missing" in lines[alpha + 1]
    # The READMEs beside the instances are passed over, as the DICOMDIRs are.
    assert f"SKIPPED {corpus.dicomdir_tests / 'TINY_ALPHA' / 'README'}: a text file, " \
           "not DICOM: not judged" in lines


def test_verbose_lists_every_finding_merging_identical_ones(corpus, tmp_path, capsys):
    folder = tmp_path / "study"
    shutil.copytree(corpus.dicomdir_tests / "98892003" / "MR2", folder)
    _, quiet = run_text(capsys, "validate", str(folder))
    code, verbose = run_text(capsys, "validate", "-v", str(folder))
    assert code == 0
    warnings = [line for line in verbose if line.lstrip().startswith("warning ")]
    assert warnings and len(verbose) > len(quiet)
    assert TOTALS.match(verbose[-1]) and verbose[-1] == quiet[-1]


def test_identical_findings_merge_with_their_count(corpus):
    result, _ = validate_instance(corpus.path("CT_small.dcm"), build_config())
    one = result.findings[0]
    counted = merged([one] * 30 + list(result.findings[1:]))
    assert counted[0] == (30, one)
    assert sum(count for count, _ in counted) == 30 + len(result.findings) - 1


def test_json_names_each_file_s_study_and_the_skipped_files(corpus, capsys):
    code = main(["validate", "--json", str(corpus.dicomdir_tests / "TINY_ALPHA")])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    uids = {s["study_instance_uid"] for s in report["studies"]}
    assert {f["study_instance_uid"] for f in report["files"]} == uids
    assert [Path(s["path"]).name for s in report["skipped"]] == ["DICOMDIR", "README"]


def test_a_dicomdir_is_told_apart_from_instances(corpus, tmp_path):
    limits = build_config().limits
    (tmp_path / "notes.txt").write_text("not dicom")
    assert is_media_directory(corpus.dicomdir_tests / "DICOMDIR", limits)
    for other in (corpus.path("CT_small.dcm"), tmp_path / "notes.txt", tmp_path / "absent"):
        assert not is_media_directory(other, limits)


def test_a_dicomdir_is_skipped_not_judged(corpus, tmp_path, capsys):
    folder = tmp_path / "cd"
    shutil.copytree(corpus.dicomdir_tests / "98892001", folder / "98892001")
    shutil.copy(corpus.dicomdir_tests / "DICOMDIR", folder / "DICOMDIR")
    code, lines = run_text(capsys, "validate", str(folder))
    assert code == 0
    assert f"SKIPPED {folder / 'DICOMDIR'}: {common.MEDIA_DIRECTORY}" in lines
    assert not [line for line in lines if line.startswith("INVALID")]
    assert lines[-1] == "8 files: 7 valid, 0 invalid, 1 skipped · 1 study: 1 valid, 0 invalid"


def test_a_run_that_judges_nothing_exits_1(corpus, capsys):
    code, lines = run_text(capsys, "validate", str(corpus.dicomdir_tests / "DICOMDIR"))
    assert code == 1
    assert lines[-1] == "1 file: 0 valid, 0 invalid, 1 skipped · 0 studies: 0 valid, 0 invalid"


def awkward_folder(corpus, root: Path) -> tuple[Path, list[Path]]:
    """Good files beside an empty file, a pipe, a folder named like a file and (for anyone
    but root, who reads anyway) a file no one may read; and the good files."""
    folder = root / "awkward"
    shutil.copytree(corpus.dicomdir_tests / "98892001" / "CT2N", folder)
    good = sorted(folder.iterdir())
    (folder / "empty.dcm").write_bytes(b"")
    os.mkfifo(folder / "pipe.dcm")
    (folder / "folder.dcm").mkdir()
    shutil.copy(corpus.path("CT_small.dcm"), folder / "folder.dcm" / "inside")
    good.append(folder / "folder.dcm" / "inside")
    if os.geteuid() != 0:
        (folder / "locked.dcm").write_bytes(b"x")
        (folder / "locked.dcm").chmod(0)
    return folder, good


@pytest.mark.parametrize("command", [["validate"], ["validate", "--json"], ["describe"],
                                     ["describe", "--json"]])
def test_awkward_files_never_raise_and_the_good_ones_get_verdicts(corpus, tmp_path, command):
    folder, good = awkward_folder(corpus, tmp_path)
    done = subprocess.run([*COMMAND, *command, str(folder)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert "Traceback" not in done.stderr
    assert done.returncode == (1 if command[0] == "validate" else 0)
    if command == ["validate", "--json"]:
        skipped = json.loads(done.stdout)["skipped"]
        assert skipped == [{"path": str(folder / "pipe.dcm"), "reason": common.NOT_REGULAR}]
    else:
        said = done.stdout + done.stderr
        assert f"SKIPPED {folder / 'pipe.dcm'}: {common.NOT_REGULAR}" in said
    if command == ["validate"]:
        for path in good:
            assert f"VALID   200 {path}" in done.stdout
        assert f"INVALID 400 {folder / 'empty.dcm'}" in done.stdout
    if os.geteuid() != 0 and command[0] == "validate":
        assert "format.unreadable" in done.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_file_no_one_may_read_is_format_unreadable(corpus, tmp_path, capsys):
    folder, _ = awkward_folder(corpus, tmp_path)
    code = main(["validate", "--json", str(folder)])
    report = json.loads(capsys.readouterr().out)
    locked = next(f for f in report["files"] if f["path"].endswith("locked.dcm"))
    assert code == 1
    assert [f["rule"] for f in locked["findings"]] == ["format.unreadable"]


@pytest.mark.parametrize("command", ["validate", "describe"])
def test_a_file_gone_between_listing_and_reading_is_one_finding(corpus, tmp_path, capsys,
                                                                monkeypatch, command):
    folder = tmp_path / "study"
    shutil.copytree(corpus.dicomdir_tests / "98892001" / "CT2N", folder)
    gone = folder / "gone.dcm"
    shutil.copy(corpus.path("CT_small.dcm"), gone)
    listed = common.is_media_directory

    def vanishing(path: Path, limits) -> bool:  # listed, then removed before it is read
        answer = listed(path, limits)
        if path == gone:
            gone.unlink()
        return answer

    monkeypatch.setattr(common, "is_media_directory", vanishing)
    code = main([command, "--json", str(folder)])
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    if command == "validate":
        entry = next(f for f in document["files"] if f["path"] == str(gone))
        assert code == 1
        assert [f["rule"] for f in entry["findings"]] == ["format.unreadable"]
        assert sum(f["valid"] for f in document["files"]) == 2
    else:
        assert code == 0
        assert document["counts"]["instances"] == 2
        assert f"status 400): {gone}" in captured.err


@pytest.mark.parametrize("command", [["validate"], ["validate", "--json"],
                                     ["describe", "--json"]])
def test_a_reader_that_stops_early_ends_the_run_quietly(corpus, command):
    """``... | head -1``: the reader is gone (closed before the command, still starting,
    prints anything) when the output comes."""
    with subprocess.Popen([*COMMAND, *command, str(corpus.dicomdir_tests)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        errors = process.stderr.read().decode()
        assert process.wait(timeout=120) == common.EXIT_BROKEN_PIPE
    assert "Traceback" not in errors and "BrokenPipe" not in errors


def test_version_is_the_installed_distribution_s(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"pacs-validator {version('pacs-validator')}"


def test_help_is_plain_text_and_status_help_names_the_environment(capsys):
    for argv in (["--help"], ["status", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "``" not in out and ":func:" not in out
    assert "PACS_VALIDATOR_TOKEN" in out and "PACS_VALIDATOR_API" in out
    assert "local-runtime/stack env" in " ".join(out.split())


def refusing(monkeypatch, status: int) -> None:
    def refuse(self, study_id: str) -> dict:
        raise ApiError(status, '{"message": "refused"}')

    monkeypatch.setattr(PacsClient, "full_status", refuse)
    monkeypatch.setenv("PACS_VALIDATOR_API", "http://127.0.0.1:9")


def test_an_unknown_study_exits_1_with_a_hint(monkeypatch, capsys):
    refusing(monkeypatch, 404)
    assert main(["status", "no-such-study"]) == 1
    assert "hint: no such study" in capsys.readouterr().err


def test_a_refused_token_names_the_variable_and_the_local_stack(monkeypatch, capsys):
    refusing(monkeypatch, 401)
    assert main(["status", "some-study"]) == 1
    err = capsys.readouterr().err
    assert "PACS_VALIDATOR_TOKEN" in err and 'eval "$(local-runtime/stack env)"' in err


def test_the_hint_names_a_command_the_stack_has():
    stack = (Path(__file__).parents[2] / "local-runtime" / "stack").read_text()
    assert "  env [STACK]" in stack
    assert common.api_error_hint(ApiError(500, "")) is None


def status_document(corpus) -> dict:
    """A status document whose files carry the real findings of a study's files."""
    files = sorted((corpus.dicomdir_tests / "98892003" / "MR2").iterdir())
    results = [validate_instance(path, build_config(), name=path.name)[0] for path in files]
    return {
        "study_id": "s1", "state": "STORED", "status": 200, "findings": [],
        "counts": {"received": len(files), "declared": len(files)},
        "files": [{"name": r.name, "findings": [f.to_dict() for f in r.findings]}
                  for r in results],
    }


def test_status_counts_warnings_by_rule_unless_verbose(corpus):
    document = status_document(corpus)
    warnings = sum(len(entry["findings"]) for entry in document["files"])
    quiet, verbose = io.StringIO(), io.StringIO()
    print_status(document, quiet)
    print_status(document, verbose, verbose=True)
    counts = [line for line in quiet.getvalue().splitlines() if f" {TIMES} " in line]
    assert counts and sum(int(line.split()[0]) for line in counts) == warnings
    assert len(verbose.getvalue().splitlines()) > len(quiet.getvalue().splitlines())
    assert "warning" in verbose.getvalue() and "warning " not in quiet.getvalue()


def test_describe_says_no_date_rather_than_none(corpus, tmp_path, capsys):
    from pydicom import dcmread

    dataset = dcmread(corpus.path("CT_small.dcm"))
    del dataset.StudyDate
    dataset.save_as(tmp_path / "undated.dcm")
    assert main(["describe", str(tmp_path / "undated.dcm")]) == 0
    out = capsys.readouterr().out
    assert "date (no date)" in out and "None" not in out


def test_a_denied_read_is_format_unreadable_even_for_root(corpus, monkeypatch):
    """What chmod 000 does to anyone but root, simulated: the open is refused."""
    from pacs_validator.dicom import validation

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(validation, "read_instance", denied)
    with pytest.raises(PermissionError):  # the pipeline's reads raise, to be retried
        validate_instance(corpus.path("CT_small.dcm"), build_config())
    result, parsed = validation.validate_file(corpus.path("CT_small.dcm"), build_config(),
                                              name="a")
    assert (result.status, parsed.dataset) == (400, None)
    assert [(f.rule, f.message) for f in result.findings] == [
        ("format.unreadable", "the file cannot be read: Permission denied")]


def test_a_text_file_named_on_its_own_is_judged_not_passed_over(corpus, capsys):
    code, lines = run_text(capsys, "validate", str(corpus.dicomdir_tests / "TINY_ALPHA" /
                                                   "README"))
    assert code == 1
    assert "format.preamble" in lines[1]
    assert lines[-1].startswith("1 file: 0 valid, 1 invalid, 0 skipped")


@pytest.mark.parametrize(("head", "text"), [
    (b"This folder holds a CD's studies.\r\n", True),
    ("é".encode() * 300, True),  # a character cut at the probe's end is still text
    (bytes(128) + b"DICM", False),
    (b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", False),  # a data set without preamble
    (b"", False),  # judged: format.empty-dataset says why
])
def test_only_plain_text_is_told_apart_as_a_text_file(tmp_path, head, text):
    path = tmp_path / "file"
    path.write_bytes(head)
    assert is_text_file(path) is text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_long_run_shows_a_bar_and_each_verdict_as_it_comes(
        corpus, monkeypatch):
    monkeypatch.setattr(progress, "SHOW_AFTER", 0)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    printed_before: list[str] = []
    validate_file = common.validate_file

    def watched(path, config, name):
        printed_before.append(terminal.getvalue())
        return validate_file(path, config, name=name)

    monkeypatch.setattr(common, "validate_file", watched)
    assert main(["validate", str(corpus.dicomdir_tests / "98892003")]) == 0

    output = terminal.getvalue()
    assert re.search(r"validating .*\d+/\d+", output)  # the bar, drawn on the terminal
    assert output.rstrip().endswith("17 files: 17 valid, 0 invalid, 0 skipped · "
                                    "3 studies: 3 valid, 0 invalid")
    assert f"VALID   200 {corpus.dicomdir_tests}" in output  # whole lines, never wrapped
    # each file's verdict is on the terminal before the next file is read
    assert all(before.count("VALID   200") == index
               for index, before in enumerate(printed_before))


def test_on_a_terminal_a_quick_run_shows_no_bar(corpus, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["validate", str(corpus.path("CT_small.dcm"))]) == 0
    assert "validating" not in terminal.getvalue()

