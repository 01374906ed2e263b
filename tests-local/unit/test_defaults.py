"""One home per default: the package's ``data/pipeline.json``.

The template's parameters reach the functions as environment variables
(``settings.ENVIRONMENT_OVERRIDES``), so each one states a default the package also has. The
template's ``Default:`` must be the package's value: a deployment that sets nothing runs as
the package says, and a changed default is changed in the package and in the template
together (this test fails otherwise). A parameter that reaches a function without being
classified below fails too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str

from pacs_validator.aws.runtime.settings import ENVIRONMENT_OVERRIDES
from pacs_validator.dicom.data import data_document

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE, _ = decode_str((ROOT / "template.yaml").read_text("utf-8"))
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
PIPELINE: dict[str, Any] = data_document("pipeline.json")

PACKAGE_DEFAULTS = {
    "MaxUploadBytes": "max_upload_bytes",
    "MaxStudyBytes": "max_study_bytes",
    "MaxOpenStudies": "max_open_studies",
    "MaxFilesPerStudy": "max_files_per_study",
    "PresignExpirySeconds": "presign_expiry_seconds",
    "UploadDeadlineSeconds": "upload_deadline_seconds",
    "ProcessingDeadlineSeconds": "processing_deadline_seconds",
    "RetentionDays": "retention_days",
    "ChunkInstances": "chunk_instances",
    "TokenCacheSeconds": "token_cache_seconds",
    "ValidationProfile": "validation_profile",
    "DuplicatePolicy": "duplicate_policy",
    "ApiAuth": "api_auth",
    "StudyWideForms": "study_wide_forms",
}
"""Template parameter -> the key of ``data/pipeline.json`` holding its default."""

NO_PACKAGE_DEFAULT = {
    "RequiredAttributes": "empty by default: the validator's own list (data/config.json) stands",
    "AdminPrincipals": "IAM mode's admins: none unless the deployment names them",
    "LogLevel": "Powertools' log level, not a setting of the package",
}
"""Template parameters that reach a function but default to nothing of the package's."""


def references(value: Any) -> Iterator[str]:
    """The names that ``value`` (a decoded template expression) refers to with ``Ref``."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield inner
            else:
                yield from references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from references(inner)


def function_environments() -> Iterator[dict[str, Any]]:
    """The environment variables of every function, the globals' first."""
    yield TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    for resource in TEMPLATE["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            yield resource["Properties"].get("Environment", {}).get("Variables", {})


def parameters_in_environments() -> dict[str, str]:
    """Each template parameter that reaches a function -> the environment variable it sets."""
    return {name: variable for environment in function_environments()
            for variable, value in environment.items()
            for name in references(value) if name in PARAMETERS}


@pytest.mark.parametrize(("parameter", "key"), PACKAGE_DEFAULTS.items())
def test_the_templates_default_is_the_packages(parameter: str, key: str) -> None:
    variable = parameters_in_environments()[parameter]
    _, convert = ENVIRONMENT_OVERRIDES[variable]
    # what the function reads: the environment variable's text, converted as settings do
    assert convert(str(PARAMETERS[parameter]["Default"])) == PIPELINE[key]


def test_every_parameter_reaching_a_function_is_classified_by_the_key_settings_read() -> None:
    reaching = parameters_in_environments()
    settings_keys = {name: ENVIRONMENT_OVERRIDES[variable][0]
                     for name, variable in reaching.items() if variable in ENVIRONMENT_OVERRIDES}
    assert settings_keys == PACKAGE_DEFAULTS
    assert set(reaching) - set(settings_keys) == set(NO_PACKAGE_DEFAULT)


def test_every_overridden_setting_has_its_default_in_the_package() -> None:
    assert {key for key, _ in ENVIRONMENT_OVERRIDES.values()} <= set(PIPELINE)


@pytest.mark.parametrize("config", sorted((ROOT / "functions").glob("*/config.json")),
                         ids=lambda path: path.parent.name)
def test_a_functions_config_states_only_what_it_changes(config: Path) -> None:
    document = json.loads(config.read_text("utf-8"))
    assert {key: value for key, value in document.items() if PIPELINE.get(key) == value} == {}
