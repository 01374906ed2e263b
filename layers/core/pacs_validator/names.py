"""File names as they appear in keys: one rule, shared by the API (which sanitises declared
names), the storage key builder and the upload client (which must name files exactly as the
API will, so that keys, manifest and status agree). Standard library only."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_LENGTH = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A file name safe to put in a key: last path component, ``[A-Za-z0-9._-]`` only.

    Unicode is folded to its closest ASCII (``é`` -> ``e``), anything else becomes ``_``,
    leading dots are dropped (no ``..``, no hidden files) and the length is capped.
    """
    base = re.split(r"[/\\]", name.strip())[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", ascii_name).lstrip(".")[:MAX_NAME_LENGTH]
    return cleaned or "file.dcm"
