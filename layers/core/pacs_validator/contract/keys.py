"""Study ids and S3 keys. This module is the only place an S3 key is formed.

Every key is built from a study id of our own format and a sanitised file name, so nothing
a client sends (``../../x``, URL-encoded or Unicode tricks, absolute paths) can make the
pipeline write outside ``incoming/<id>/``, ``studies/<id>/`` or ``rejected/<id>/``.

Besides ``incoming/``, the uploads bucket holds what the pipeline keeps while a study is in
flight, under prefixes the S3 trigger does not watch: ``manifests/<id>.json`` (the declared
files) and ``work/<id>/`` (storage chunks and their parts, reports). Both expire
with the bucket's lifecycle rule.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from pacs_validator.contract.names import safe_name

STUDY_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
INCOMING = "incoming"
STUDIES = "studies"
REJECTED = "rejected"
MANIFESTS = "manifests"
WORK = "work"


class UnsafeKeyError(ValueError):
    """A key or name that cannot be made safe."""


def new_study_id() -> str:
    return uuid.uuid4().hex


def study_id_for_token(owner: str, client_token: str) -> str:
    """The id of the study ``owner`` declares with ``client_token``: derived from both, so
    a declaration sent again after a lost answer names the study the first one made, and
    one owner's token never names another owner's study. A token holds no ``/``, so the
    last one in the name parts owner and token unambiguously."""
    return uuid.uuid5(uuid.NAMESPACE_URL,
                      f"pacs-validator:client-token:{owner}/{client_token}").hex


def study_id_for_drop(bucket: str, key: str, version: str) -> str:
    """The id of a plain drop: derived from the object, so a redelivered event maps to it."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{key}#{version}").hex


def is_study_id(text: str) -> bool:
    return bool(STUDY_ID_PATTERN.match(text))


@dataclass(frozen=True)
class IncomingKey:
    """What an ``incoming/`` key says: the study it belongs to (if any) and the file name."""

    study_id: str | None
    name: str


def parse_incoming_key(key: str) -> IncomingKey:
    """``incoming/<id>/<name>`` -> (id, name); a plain drop ``incoming/<name>`` has no id.

    A name holding ``/`` (``incoming/<id>/a/b.dcm``, which the study-wide form allows) is
    named by its last part, as :func:`safe_name` names it when it is declared."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == INCOMING and is_study_id(parts[1]):
        return IncomingKey(study_id=parts[1], name=safe_name(parts[-1]))
    return IncomingKey(study_id=None, name=safe_name(parts[-1]))


def _checked(study_id: str) -> str:
    if not is_study_id(study_id):
        raise UnsafeKeyError("not a study id")
    return study_id


def incoming_key(study_id: str, name: str) -> str:
    return f"{incoming_prefix(study_id)}{safe_name(name)}"


def incoming_prefix(study_id: str) -> str:
    """The prefix every file of a declared study is uploaded under."""
    return f"{INCOMING}/{_checked(study_id)}/"


def study_prefix(study_id: str) -> str:
    """``studies/<id>/``: everything a stored study has."""
    return f"{STUDIES}/{_checked(study_id)}/"


def study_key(study_id: str, leaf: str) -> str:
    """``studies/<id>/<leaf>`` for a fixed leaf (``metadata.json``, ``validation.log``)."""
    return f"{study_prefix(study_id)}{safe_name(leaf)}"


def stored_instance_key(study_id: str, sop_instance_uid: str | None, single: bool) -> str:
    """Where a valid instance is stored: ``original.dcm`` alone, or by SOPInstanceUID."""
    if single or not sop_instance_uid:
        return study_key(study_id, "original.dcm")
    return f"{study_prefix(study_id)}instances/{safe_name(sop_instance_uid)}.dcm"


def stored_study_keys(study_id: str) -> dict[str, str]:
    """Where a stored study's objects are: its prefix, its metadata and reports, its
    previews' prefix (the ``keys`` of its status)."""
    return {
        "prefix": study_prefix(study_id),
        "metadata": study_key(study_id, "metadata.json"),
        "dicom_json": study_key(study_id, "dicom.json"),
        "validation_json": study_key(study_id, "validation.json"),
        "validation_log": study_key(study_id, "validation.log"),
        "previews": previews_prefix(study_id),
    }


def previews_prefix(study_id: str) -> str:
    """``studies/<id>/previews/``: one PNG per series."""
    return f"{study_prefix(study_id)}previews/"


def preview_key(study_id: str, series_instance_uid: str) -> str:
    """``studies/<id>/previews/<SeriesInstanceUID>.png``."""
    return f"{previews_prefix(study_id)}{safe_name(series_instance_uid)}.png"


def rejected_prefix(study_id: str) -> str:
    """``rejected/<id>/``: the copied files and reports of a study that was refused."""
    return f"{REJECTED}/{_checked(study_id)}/"


def rejected_key(study_id: str, leaf: str) -> str:
    return f"{rejected_prefix(study_id)}{safe_name(leaf)}"


def manifest_key(study_id: str) -> str:
    return f"{MANIFESTS}/{_checked(study_id)}.json"


def work_key(study_id: str, *parts: str) -> str:
    """``work/<id>/<part>/.../<leaf>``: the pipeline's scratch objects for one study."""
    return "/".join((WORK, _checked(study_id), *(safe_name(p) for p in parts)))
