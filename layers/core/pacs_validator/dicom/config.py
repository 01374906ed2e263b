"""Validator configuration: which attributes are required, which rules run and how strictly.

The defaults are the document ``data/config.json``; a user's JSON file (CLI ``--config``, the
Lambdas' ``config.json``) overrides it key by key, and ``rules`` entry by entry, so a
deployment states only what it changes. ``limits`` and ``conformance`` too are overridden
entry by entry.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword

from pacs_validator.dicom.data import data_document
from pacs_validator.dicom.limits import ConformanceSettings, Limits
from pacs_validator.dicom.rules import RuleBook

_KEYWORD_LISTS = (
    "required_attributes",
    "identifying_uids",
    "checked_dates",
    "single_valued",
    "patient_attributes",
    "study_attributes",
)


class ConfigError(ValueError):
    """The configuration document is malformed or names something that does not exist."""


@dataclass(frozen=True)
class ValidatorConfig:
    required_attributes: tuple[str, ...]
    identifying_uids: tuple[str, ...]
    checked_dates: tuple[str, ...]
    single_valued: tuple[str, ...]
    patient_attributes: tuple[str, ...]
    study_attributes: tuple[str, ...]
    max_bytes: int | None
    defer_size: int
    limits: Limits
    conformance: ConformanceSettings
    rules: RuleBook = field(compare=False)
    fingerprint_key: bytes = field(default_factory=lambda: secrets.token_bytes(32),
                                   compare=False, repr=False)
    """The key of the instances' fingerprints (``validation.fingerprint``). Random for each
    configuration built, as the command line needs (it compares fingerprints within one
    run); the pipeline gives the deployment's key, which every invocation shares."""


@cache
def _defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = data_document("config.json")
    return defaults


def build_config(overrides: dict[str, Any] | None = None) -> ValidatorConfig:
    """The default configuration with ``overrides`` (a parsed config document) applied."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(_defaults()))
    if unknown:
        raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}")
    merged = {**_defaults(), **overrides}
    for key in _KEYWORD_LISTS:
        bad = [k for k in merged[key] if not isinstance(k, str) or tag_for_keyword(k) is None]
        if bad:
            raise ConfigError(f"{key}: not DICOM keywords: {', '.join(map(str, bad))}")
    max_bytes = merged["max_bytes"]
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes <= 0):
        raise ConfigError("max_bytes must be a positive integer or null")
    if not isinstance(merged["limits"], dict):
        raise ConfigError("limits must be an object")
    try:
        limits = Limits.from_document({**_defaults()["limits"], **merged["limits"]})
    except ValueError as exc:
        raise ConfigError(f"limits: {exc}") from exc
    if not isinstance(merged["conformance"], dict):
        raise ConfigError("conformance must be an object")
    try:
        conformance = ConformanceSettings.from_document(
            {**_defaults()["conformance"], **merged["conformance"]})
    except ValueError as exc:
        raise ConfigError(f"conformance: {exc}") from exc
    try:
        rules = RuleBook(merged["rules"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"rules: {exc}") from exc
    keyword_lists: dict[str, Any] = {key: tuple(merged[key]) for key in _KEYWORD_LISTS}
    return ValidatorConfig(
        **keyword_lists,
        max_bytes=max_bytes,
        defer_size=int(merged["defer_size"]),
        limits=limits,
        conformance=conformance,
        rules=rules,
    )


def load_config(path: str | Path | None = None) -> ValidatorConfig:
    """The configuration from a JSON file, or the defaults when ``path`` is None."""
    if path is None:
        return build_config()
    try:
        document = json.loads(Path(path).read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError("the configuration must be a JSON object")
    return build_config(document)
