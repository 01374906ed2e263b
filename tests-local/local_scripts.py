"""The scripts under local-runtime/ and docs/ as modules, for their tests: they are files to
run, not a package, and their names need not be importable."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

LOCAL_RUNTIME = Path(__file__).resolve().parents[1] / "local-runtime"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def load(file_name: str, folder: Path = LOCAL_RUNTIME) -> ModuleType:
    """<folder>/<file_name> (local-runtime/ by default) imported once (registered, as
    dataclasses need)."""
    name = Path(file_name).stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / file_name)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
