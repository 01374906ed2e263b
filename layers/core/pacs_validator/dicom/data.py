"""The package's data files: the rule catalogue, the IOD table, tag mappings and defaults,
kept as JSON in ``pacs_validator/data/`` so that changing a rule or a mapping is an edit of
data, not of code."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def data_document(name: str) -> Any:
    """The JSON document ``data/<name>``, read from the installed package."""
    return json.loads(resources.files("pacs_validator").joinpath("data", name).read_text("utf-8"))
