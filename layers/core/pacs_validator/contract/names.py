"""Names both sides of an upload agree on, standard library only: file names as they appear
in keys (one rule, shared by the API, which sanitises declared names, the storage key builder
and the upload client, which must name files exactly as the API will so that keys, manifest
and status agree), and the checksum fields of the presigned POST form."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_LENGTH = 128
CHECKSUM_ALGORITHM = "SHA256"
CHECKSUM_ALGORITHM_FIELD = "x-amz-checksum-algorithm"
CHECKSUM_FIELD = "x-amz-checksum-sha256"
"""The form field a client adds to each presigned POST: base64 of the file's SHA-256; S3
refuses a file whose bytes do not match it."""
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
