"""The gateway's spool: every instance it accepted, on disk, before the sender is told.

An instance that passed is copied into ``incoming/`` (written, flushed, fsynced, its digest
checked against the one judged) and kept by a rename into
``instances/<calling AE>/<StudyInstanceUID>/<SOPInstanceUID>.dcm``, after which the folder
holding it is fsynced: once :meth:`Spool.keep` returns, a power cut loses nothing the sender
was told is stored. What is refused never enters the spool; whatever a crash leaves in
``incoming/`` was never acknowledged.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from enum import Enum
from pathlib import Path

from pacs_validator.contract.names import safe_name

COPY_CHUNK_BYTES = 1024 * 1024


class ChangedSinceJudged(RuntimeError):
    """The bytes copied into the spool are not those judged."""


class Kept(Enum):
    """What keeping an instance did."""

    STORED = "stored"
    """Now in the spool."""
    SAME = "same"
    """The spool held it already, with the same bytes: nothing changed."""
    CONFLICT = "conflict"
    """The spool holds this SOPInstanceUID with other bytes: the first is kept."""


def caller_folder(calling_ae: str) -> str:
    """A folder name for a calling AE title: readable, and distinct for titles that only
    differ in characters a file name cannot hold (``A B`` and ``A_B``)."""
    digest = hashlib.sha256(calling_ae.encode()).hexdigest()[:8]
    return f"{safe_name(calling_ae.strip() or 'unnamed')}-{digest}"


def fsync_folder(path: Path) -> None:
    """Make a folder's entries (a rename into it, a file made in it) durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(COPY_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class Spool:
    """The instances accepted, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.instances = root / "instances"
        self._keeping = threading.Lock()
        for folder in (self.incoming, self.instances):
            self._make_folder(folder)

    def _copy_in(self, source: Path, sha256: str) -> Path:
        """Copy a judged data set into ``incoming/``, durably, under a name of its own;
        raises ChangedSinceJudged when the copy is not the bytes judged."""
        target = self.incoming / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        with source.open("rb") as reading, target.open("xb") as writing:
            while chunk := reading.read(COPY_CHUNK_BYTES):
                digest.update(chunk)
                writing.write(chunk)
            writing.flush()
            os.fsync(writing.fileno())
        if digest.hexdigest() != sha256:
            target.unlink()
            raise ChangedSinceJudged(source.name)
        return target

    def keep(self, source: Path, calling_ae: str, study_instance_uid: str,
             sop_instance_uid: str, sha256: str) -> Kept:
        """Keep a judged instance (its bytes, ``sha256``) in its study's folder, durably."""
        folder = self.instances / caller_folder(calling_ae) / safe_name(study_instance_uid)
        target = folder / f"{safe_name(sop_instance_uid)}.dcm"
        with self._keeping:
            self._make_folder(folder)
            if target.exists():
                return Kept.SAME if file_digest(target) == sha256 else Kept.CONFLICT
            self._copy_in(source, sha256).replace(target)
            fsync_folder(folder)
        return Kept.STORED

    def _make_folder(self, folder: Path) -> None:
        """Make ``folder`` and its missing parents, each made one durable in its parent."""
        missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
        for made in reversed(missing):
            made.mkdir(exist_ok=True)
            fsync_folder(made.parent)
