"""``pacs-validator gateway serve``'s options: the command line's over a config file's over
the defaults, and the usage errors a wrong file or option gets (exit 2, nothing started)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pacs_validator.cli.main import build_parser, main
from pacs_validator.gateway.settings import DEFAULTS, SettingsError, settings


def chosen(*argv: str) -> dict[str, Any]:
    return settings(build_parser().parse_args(["gateway", "serve", *argv]))


def config_file(folder: Path, document: Any) -> Path:
    path = folder / "gateway.json"
    path.write_text(json.dumps(document))
    return path


def test_without_a_file_the_defaults_stand_but_the_spool_must_be_given(tmp_path: Path) -> None:
    values = chosen("--spool", str(tmp_path))
    assert values == {**DEFAULTS, "spool": tmp_path, "validator": None}
    with pytest.raises(SettingsError, match="no spool"):
        chosen()


def test_a_config_file_gives_every_option_and_the_command_line_wins(tmp_path: Path) -> None:
    path = config_file(tmp_path, {
        "spool": "spool", "ae_title": "GATE", "port": 104, "host": "0.0.0.0",
        "allow_ae": ["CT1@10.0.0.21", "MR1"], "stable_seconds": 30, "api": "https://api",
        "commit_to": ["CT1=10.0.0.21:104"], "tls_cert": "/etc/tls/cert.pem",
        "max_pdu": 65536, "max_associations": 4, "validator": {"checked_dates": ["StudyDate"]}})

    values = chosen("--config", str(path), "--port", "11112", "--allow-ae", "US1", "US2")

    assert values["spool"] == tmp_path / "spool"  # relative to the file's folder
    assert values["tls_cert"] == Path("/etc/tls/cert.pem")
    assert (values["port"], values["allow_ae"]) == (11112, ["US1", "US2"])
    assert (values["ae_title"], values["host"], values["stable_seconds"]) == (
        "GATE", "0.0.0.0", 30.0)
    assert (values["commit_to"], values["max_pdu"], values["validator"]) == (
        ["CT1=10.0.0.21:104"], 65536, {"checked_dates": ["StudyDate"]})


@pytest.mark.parametrize(("document", "message"), [
    ({"spool": "s", "ports": 104}, "unknown option(s) ports"),
    ({"spool": "s", "port": "104"}, "'port' must be a number"),
    ({"spool": "s", "port": True}, "'port' must be a number"),
    ({"spool": "s", "allow_ae": "CT1"}, "'allow_ae' must be a list of strings"),
    ({"spool": 7}, "'spool' must be a string"),
    ({"spool": "s", "validator": ["strict"]}, "'validator' must be a JSON object"),
    (["spool"], "must hold a JSON object"),
])
def test_a_wrong_config_file_is_refused_naming_the_option(
        tmp_path: Path, document: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        chosen("--config", str(config_file(tmp_path, document)))


@pytest.mark.parametrize(("argv", "message"), [
    (["--commit-to", "CT1=somewhere"], "--commit-to wants AE=HOST:PORT"),
    (["--config", "missing.json"], "cannot read missing.json"),
    ([], "no API"),
])
def test_serve_refuses_unusable_options_with_exit_2_before_listening(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PACS_VALIDATOR_API", raising=False)
    api = ["--api", "https://api.example.org"] if message != "no API" else []

    assert main(["gateway", "serve", "--spool", "spool", *api, *argv]) == 2

    assert message in capsys.readouterr().err
    assert not (tmp_path / "spool").exists()
