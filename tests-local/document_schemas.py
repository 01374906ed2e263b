"""The JSON Schemas the package ships (``pacs_validator/data/schemas/``), as the tests hold
every document they produce to them: ``metadata.json``, ``validation.json`` and the CLI's
reports, and every finding.

The schemas are read from the installed package, as a consumer of it would read them, and
refer to one another by file name (``finding.schema.json``) under their common ``$id`` base.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

FINDING = "finding.schema.json"
METADATA = "metadata.schema.json"
VALIDATION_REPORT = "validation-report.schema.json"
SCHEMA_NAMES = (FINDING, METADATA, VALIDATION_REPORT)


def shipped_schema(name: str) -> dict[str, Any]:
    """A schema as the package ships it."""
    text = (files("pacs_validator") / "data" / "schemas" / name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _registry() -> Registry[Any]:
    resources = [Resource.from_contents(shipped_schema(name)) for name in SCHEMA_NAMES]
    return Registry().with_resources((str(r.id()), r) for r in resources)


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator of the schema ``name`` (its references to the others resolved)."""
    return Draft202012Validator(shipped_schema(name), registry=_registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(name: str, document: Any) -> list[str]:
    """Where and how ``document`` breaks the schema ``name`` (empty when it conforms)."""
    return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator(name).iter_errors(document)]


def check(name: str, document: Any, what: str = "document") -> None:
    """AssertionError naming the first problems of a ``document`` that breaks ``name``."""
    found = problems(name, document)
    assert not found, f"{what} breaks {name}: " + "; ".join(found[:5])


def check_findings(findings: Iterable[dict[str, Any]], what: str = "finding") -> None:
    for finding in findings:
        check(FINDING, finding, what)
