"""The README's parameter reference is what template.yaml says
(local-runtime/parameter_reference.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from local_scripts import load

ROOT = Path(__file__).resolve().parents[2]


reference = load("parameter_reference.py")
TEMPLATE = (ROOT / "template.yaml").read_text("utf-8")
README = (ROOT / "README.md").read_text("utf-8")


def test_readme_table_is_the_templates() -> None:
    """Fails when a parameter was added, removed or changed without regenerating the table."""
    assert reference.main(["--check"]) == 0, \
        "run .venv/bin/python local-runtime/parameter_reference.py"


def test_every_template_parameter_has_a_row() -> None:
    for name in reference.load_parameters(TEMPLATE):
        assert f"| `{name}` |" in README


def test_a_new_parameter_makes_the_check_fail(tmp_path: Path) -> None:
    added = TEMPLATE.replace("Parameters:\n", "Parameters:\n  NewKnob:\n    Type: Number\n"
                             "    Default: 3\n    MinValue: 1\n    Description: A knob.\n", 1)
    (tmp_path / "template.yaml").write_text(added)
    (tmp_path / "README.md").write_text(README)
    paths = ["--template", str(tmp_path / "template.yaml"), "--readme", str(tmp_path / "README.md")]
    assert reference.main(["--check", *paths]) == 1
    assert reference.main(paths) == 0
    assert "| `NewKnob` | `3` | Number; ≥ 1 | A knob. |" in (tmp_path / "README.md").read_text()
    assert reference.main(["--check", *paths]) == 0


def test_a_parameter_without_description_is_refused() -> None:
    with pytest.raises(ValueError, match="Undescribed"):
        reference.table({"Undescribed": {"Type": "String"}})


def test_allowed_values_pattern_and_empty_default_are_shown() -> None:
    row = reference.table({"Mode": {"Type": "String", "Default": "", "AllowedValues": ["A", "B"],
                                    "Description": "Picks a | b."}}).splitlines()[-1]
    assert row == '| `Mode` | `""` (empty) | String; one of `A`, `B` | Picks a \\| b. |'


def test_missing_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="markers"):
        reference.with_table("# no table here\n", "| a |")
