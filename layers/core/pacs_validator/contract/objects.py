"""Which upload of an object an S3 notification announces, and how two uploads of one key
are ordered.

An upload form lets a client post a name again, so one key can see several uploads, and S3
may deliver their notifications in any order. The notification's ``sequencer`` orders the
events of one key; its ``versionId`` (the uploads bucket is versioned) names exactly the
bytes that landed, so what is validated, judged and stored is one and the same object.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UploadedObject:
    """One upload of an object under ``incoming/``, as its notification described it."""

    key: str
    sequencer: str
    """Orders the uploads of ``key`` (see :func:`is_later`); also tells a redelivered
    notification (same sequencer) from another upload of the key."""
    version_id: str | None = None
    """The S3 version that landed; None on a bucket without versioning."""
    size: int | None = None

    @property
    def identity(self) -> str:
        """What tells this upload from any other of the key: its sequencer and version
        (LocalStack gives every notification the same sequencer; versions still differ)."""
        return f"{self.sequencer}#{self.version_id or ''}"


def is_later(sequencer: str, than: str) -> bool:
    """Whether ``sequencer`` announces a later upload of the key than ``than``.

    S3 documents the comparison: pad the shorter hexadecimal value with leading zeros, then
    compare the strings."""
    width = max(len(sequencer), len(than))
    return sequencer.upper().rjust(width, "0") > than.upper().rjust(width, "0")
