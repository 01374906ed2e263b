"""The docs' generated tables are what their sources say (docs/generate.py): the parameter
reference is template.yaml's, the rules table rules.json's, the CLI reference the parser's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from local_scripts import DOCS, load

from pacs_validator.dicom.rules import rule_ids

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "run .venv/bin/python docs/generate.py"

generate = load("generate.py", DOCS)


def copy_of_the_sources(tmp_path: Path) -> Path:
    """A repository of the generator's sources and pages, to change without touching ours."""
    for item in generate.GENERATED:
        (tmp_path / item.page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / item.page, tmp_path / item.page)
    (tmp_path / generate.RULES_JSON).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / generate.RULES_JSON, tmp_path / generate.RULES_JSON)
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    return tmp_path


@pytest.mark.parametrize("item", generate.GENERATED, ids=lambda item: item.name)
def test_the_committed_table_is_its_sources(item) -> None:
    """Fails when a parameter, a rule or an option changed without regenerating the page."""
    page = (ROOT / item.page).read_text("utf-8")
    assert generate.with_block(page, item.name, item.make(ROOT)) == page, REGENERATE


def test_the_check_passes_on_this_repository() -> None:
    assert generate.main(["--check"]) == 0, REGENERATE


def test_every_template_parameter_has_a_row() -> None:
    page = (ROOT / "docs/configuration.md").read_text("utf-8")
    for name in generate.load_parameters((ROOT / "template.yaml").read_text("utf-8")):
        assert f"| `{name}` |" in page


def test_every_rule_and_every_command_has_a_row() -> None:
    rules = (ROOT / "docs/rules.md").read_text("utf-8")
    for rule_id in rule_ids():
        assert f"| `{rule_id}` |" in rules
    cli = (ROOT / "docs/cli.md").read_text("utf-8")
    for command in ("validate", "describe", "upload", "status"):
        assert f"### `pacs-validator {command}`" in cli


def test_a_new_parameter_makes_the_check_fail(tmp_path: Path) -> None:
    root = copy_of_the_sources(tmp_path)
    template = (root / "template.yaml").read_text()
    (root / "template.yaml").write_text(template.replace(
        "Parameters:\n", "Parameters:\n  NewKnob:\n    Type: Number\n    Default: 3\n"
        "    MinValue: 1\n    Description: A knob.\n", 1))
    assert generate.main(["--check", "--root", str(root)]) == 1
    assert generate.main(["--root", str(root)]) == 0
    page = (root / "docs/configuration.md").read_text()
    assert "| `NewKnob` | `3` | Number; ≥ 1 | A knob. |" in page
    assert generate.main(["--check", "--root", str(root)]) == 0


def test_a_new_rule_makes_the_check_fail(tmp_path: Path) -> None:
    root = copy_of_the_sources(tmp_path)
    rules = root / generate.RULES_JSON
    rules.write_text(rules.read_text().replace(
        "{", '{"value.new": {"severity": "warning", "status": 422, "title": "A new | rule."},', 1))
    assert generate.main(["--check", "--root", str(root)]) == 1
    assert generate.main(["--root", str(root)]) == 0
    page = (root / "docs/rules.md").read_text()
    assert "| `value.new` | warning | 422 | A new \\| rule. |" in page


def test_a_parameter_without_description_is_refused() -> None:
    with pytest.raises(ValueError, match="Undescribed"):
        generate.parameter_table({"Undescribed": {"Type": "String"}})


def test_allowed_values_pattern_and_empty_default_are_shown() -> None:
    row = generate.parameter_table({"Mode": {"Type": "String", "Default": "", "AllowedValues":
                                             ["A", "B"], "Description": "Picks a | b."}})
    wanted = '| `Mode` | `""` (empty) | String; one of `A`, `B` | Picks a \\| b. |'
    assert row.splitlines()[-1] == wanted


def test_missing_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="markers"):
        generate.with_block("# no table here\n", "rules", "| a |")


def test_each_option_of_the_parser_is_in_the_cli_reference() -> None:
    reference = generate.cli_reference(generate.build_parser())
    assert "`--jobs N`" in reference and "`--dicom-json FILE`" in reference
    assert "`PATH…`" in reference and "`STUDY_ID`" in reference
    assert "usage: pacs-validator upload" in reference
