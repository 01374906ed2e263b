"""What the index of stored SOP instances holds, and what a deployment does with an
instance stored before with other bytes (see :mod:`pacs_validator.flow.duplicates`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class DuplicatePolicy(Enum):
    """What a deployment does with a SOPInstanceUID stored before with other bytes
    (template parameter ``DuplicatePolicy``)."""

    REFUSE = "refuse"
    VERSION = "version"


@dataclass(frozen=True)
class StoredInstance:
    """One entry of the index of stored SOP instances (see
    :mod:`~pacs_validator.flow.duplicates`): the study id it is stored under, the digest
    of its bytes, and which version of the instance that is."""

    sop_instance_uid: str
    study_id: str
    sha256: str
    version: int = 1
