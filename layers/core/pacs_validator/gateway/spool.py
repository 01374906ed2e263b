"""The gateway's spool: every instance it accepted, on disk, before the sender is told, and
the only state the gateway keeps.

An instance that passed is copied into ``incoming/`` (written, flushed, fsynced, its digest
checked against the one judged) and kept by a rename into its study part's folder,
``instances/<calling AE>/<StudyInstanceUID>/<part>/<SOPInstanceUID>.dcm``, after which the
folder is fsynced: once :meth:`Spool.keep` returns, a power cut loses nothing the sender was
told is stored. What is refused never enters the spool (one line in ``refused.jsonl`` says
why); whatever a crash leaves in ``incoming/`` was never acknowledged, and is removed.

Instances group into study parts by calling AE and StudyInstanceUID. A part takes instances
until it closes (:meth:`Spool.closable`: its associations ended and none arrived for the
stable time, counted again from the start of a gateway that finds it receiving); an
instance that arrives after that opens the next part. Each part's record, ``part.json``
beside its instances, is replaced atomically whenever the part changes stage, so a gateway
started on the same spool after a crash finds every part where it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Hashable, Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pacs_validator.contract.names import safe_name

logger = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 1024 * 1024
RESERVE_BYTES = 256 * 1024 * 1024
"""Free space the spool keeps beyond any instance it takes: for the records of its parts,
and so that a full disk is met by a refusal, not by a failed write."""
RECORD = "part.json"
REFUSALS = "refused.jsonl"
EARLIER_REFUSALS = "refused.1.jsonl"
REFUSALS_MAX_BYTES = 16 * 1024 * 1024
"""When ``refused.jsonl`` passes this size it becomes ``refused.1.jsonl`` (replacing the
one before) and a new one starts: a sender that sends broken instances for ever costs the
spool 32 MiB at most, the latest refusals kept."""
IDENTITY = "spool.json"


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


class Stage(str, Enum):
    """Where a study part is on its way to the cloud."""

    RECEIVING = "receiving"
    """Taking instances."""
    CLOSED = "closed"
    """Complete here; to be declared."""
    DECLARED = "declared"
    """The cloud knows it by its study id; its files are being sent."""
    SENT = "sent"
    """Every file sent; its verdict is awaited."""
    DONE = "done"
    """The cloud's verdict is in."""


@dataclass
class StudyPart:
    """One upload of a study: the instances one calling AE sent between two closes."""

    calling_ae: str
    study_instance_uid: str
    number: int
    stage: Stage = Stage.RECEIVING
    instances: dict[str, str] = field(default_factory=dict)
    """SOPInstanceUID -> SHA-256 of the bytes kept (listed in full from its close on)."""
    study_id: str | None = None
    attempt: int = 1
    """Declarations so far: a study the cloud gave up on (INCOMPLETE, FAILED) is declared
    anew."""
    state: str | None = None
    """The cloud's state, once known."""
    stored_as: str | None = None
    """The study that holds these instances, when the cloud had them all already."""
    problem: str | None = None
    """Why the last step failed (it is tried again)."""
    uploaded: int = 0
    """Files the cloud has received, as last known."""
    failures: dict[str, str] = field(default_factory=dict)
    """SOPInstanceUID -> why the cloud did not store it (its status and rule ids), once the
    verdict is in."""
    earlier_study_ids: list[str] = field(default_factory=list)
    """The studies of earlier declarations that the cloud gave up on."""
    last_arrival: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self.calling_ae, self.study_instance_uid

    @property
    def folder(self) -> Path:
        """Its folder, relative to the spool's ``instances/``."""
        return Path(caller_folder(self.calling_ae), safe_name(self.study_instance_uid),
                    str(self.number))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stage": self.stage.value}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> StudyPart:
        return cls(**{**document, "stage": Stage(document["stage"])})


def caller_folder(calling_ae: str) -> str:
    """A folder name for a calling AE title: readable, and distinct for titles that only
    differ in characters a file name cannot hold (``A B`` and ``A_B``)."""
    digest = hashlib.sha256(calling_ae.encode()).hexdigest()[:8]
    return f"{safe_name(calling_ae.strip() or 'unnamed')}-{digest}"


def instance_file_name(sop_instance_uid: str) -> str:
    return f"{safe_name(sop_instance_uid)}.dcm"


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


def write_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a crash leaves the old file or the new."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with temporary.open("x", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    temporary.replace(path)
    fsync_folder(path.parent)


def part_folders(root: Path) -> Iterator[Path]:
    """The folder of every study part in the spool at ``root``."""
    yield from sorted(record.parent for record in (root / "instances").glob(f"*/*/*/{RECORD}"))


def read_part(folder: Path, digests: bool = True) -> StudyPart:
    """A part as its record says; a receiving part's instances are the files it holds (their
    digests read from them, or left empty without ``digests``: a reader that only counts
    them)."""
    part = StudyPart.from_dict(json.loads((folder / RECORD).read_text("utf-8")))
    if part.stage is Stage.RECEIVING:
        files = sorted(folder.glob("*.dcm"))
        part.instances = {path.stem: file_digest(path) if digests else "" for path in files}
        part.last_arrival = max([part.last_arrival, *(p.stat().st_mtime for p in files)])
    return part


def is_spool(root: Path) -> bool:
    """Whether ``root`` is a gateway's spool (a gateway made it)."""
    return (root / IDENTITY).is_file()


def read_refusals(root: Path) -> list[dict[str, Any]]:
    """What the gateway at ``root`` refused, as far back as it keeps, oldest first (a line
    a crash cut short is left out)."""
    refusals = []
    for path in (root / EARLIER_REFUSALS, root / REFUSALS):
        if not path.is_file():
            continue
        for line in path.read_text("utf-8").splitlines():
            try:
                refusals.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return refusals


class Spool:
    """The instances accepted, and their study parts, under ``root`` (module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.instances = root / "instances"
        self._lock = threading.Lock()
        self._parts: dict[Path, StudyPart] = {}
        self._studies: dict[tuple[str, str], list[StudyPart]] = {}
        """The parts of each (calling AE, StudyInstanceUID): what one instance is checked
        against, whatever else the spool holds."""
        self._open: dict[tuple[str, str], Path] = {}
        self._associations: dict[Path, set[Hashable]] = {}
        self._fed_by: dict[Hashable, set[Path]] = {}
        """The open parts each association sent to."""
        for folder in (self.incoming, self.instances):
            self._make_folder(folder)
        self._mark_as_spool()
        for leftover in self.incoming.iterdir():
            leftover.unlink()
        for folder in part_folders(root):
            part = read_part(folder)
            self._add(folder, part)
            if part.stage is Stage.RECEIVING:
                # Its senders may be sending again what a crash left unanswered: the
                # stable time counts from now.
                part.last_arrival = max(part.last_arrival, time.time())

    def _mark_as_spool(self) -> None:
        """Give the spool its own id, once: what marks a folder as a gateway's spool."""
        path = self.root / IDENTITY
        if not path.is_file():
            write_durably(path, json.dumps({"spool_id": uuid.uuid4().hex}))
        self.spool_id = str(json.loads(path.read_text("utf-8"))["spool_id"])

    def _add(self, folder: Path, part: StudyPart) -> None:
        self._parts[folder] = part
        self._studies.setdefault(part.key, []).append(part)
        if part.stage is Stage.RECEIVING:
            self._open[part.key] = folder

    def has_room_for(self, size: int) -> bool:
        """Whether an instance of ``size`` bytes can be kept with :data:`RESERVE_BYTES` to
        spare on the spool's file system (what is being copied in meanwhile aside)."""
        return shutil.disk_usage(self.incoming).free - size >= RESERVE_BYTES

    def keep(self, source: Path, calling_ae: str, study_instance_uid: str,
             sop_instance_uid: str, sha256: str, association: Hashable) -> Kept:
        """Keep a judged instance (its bytes, ``sha256``) in its study's open part, durably;
        the instance came on ``association``, which keeps the part open until it ends."""
        key = (calling_ae, study_instance_uid)
        with self._lock:  # a sender's re-send is answered without a copy
            known = self._known(key, sop_instance_uid)
        if known is not None:
            return Kept.SAME if known == sha256 else Kept.CONFLICT
        copied = self._copy_in(source, sha256)  # outside the lock: associations copy at once
        try:
            with self._lock:  # again: another association may have kept it meanwhile
                known = self._known(key, sop_instance_uid)
                if known is not None:
                    return Kept.SAME if known == sha256 else Kept.CONFLICT
                folder = self._open.get(key) or self._open_part(key)
                copied.replace(folder / instance_file_name(sop_instance_uid))
                part = self._parts[folder]
                part.instances[sop_instance_uid] = sha256
                part.last_arrival = time.time()
                self._associations.setdefault(folder, set()).add(association)
                self._fed_by.setdefault(association, set()).add(folder)
        finally:
            copied.unlink(missing_ok=True)
        fsync_folder(folder)
        return Kept.STORED

    def _known(self, key: tuple[str, str], sop_instance_uid: str) -> str | None:
        """The digest the spool holds for an instance of the study, in any part the cloud
        has not rejected (a rejected one may be sent again, changed)."""
        for part in self._studies.get(key, []):
            if part.state != "REJECTED" and sop_instance_uid in part.instances:
                return part.instances[sop_instance_uid]
        return None

    def _open_part(self, key: tuple[str, str]) -> Path:
        numbers = [part.number for part in self._studies.get(key, [])]
        part = StudyPart(*key, number=max(numbers, default=0) + 1)
        folder = self.instances / part.folder
        self._make_folder(folder)
        write_durably(folder / RECORD, json.dumps(part.to_dict()))
        self._add(folder, part)
        if part.number > 1:
            logger.info("an instance came after its study closed: it opens the next part",
                        extra={"calling_ae": key[0], "part": part.number})
        return folder

    def ended(self, association: Hashable) -> None:
        """``association`` sends no more: the parts it sent to may close."""
        with self._lock:
            for folder in self._fed_by.pop(association, set()):
                self._associations.get(folder, set()).discard(association)

    def closable(self, stable_seconds: float, now: float) -> list[StudyPart]:
        """The receiving parts whose associations have all ended and that got no instance
        for ``stable_seconds``."""
        with self._lock:
            return [self._parts[folder] for folder in self._open.values()
                    if not self._associations.get(folder)
                    and now - self._parts[folder].last_arrival >= stable_seconds]

    def close(self, part: StudyPart) -> None:
        """Take no more instances into ``part`` (a late one opens the next part)."""
        with self._lock:
            folder = self._open.pop(part.key)
            self._associations.pop(folder, None)
            part.stage = Stage.CLOSED
            self._save(folder, part)

    def parts(self) -> list[StudyPart]:
        with self._lock:
            return list(self._parts.values())

    def save(self, part: StudyPart) -> None:
        """Record what changed in ``part`` (its stage, its study), durably."""
        with self._lock:
            self._save(self.instances / part.folder, part)

    def files(self, part: StudyPart) -> dict[str, Path]:
        """The files of a closed part, by the name each is uploaded as."""
        folder = self.instances / part.folder
        return {name: folder / name for name in map(instance_file_name, part.instances)}

    def drop_files(self, part: StudyPart) -> None:
        """Remove the files of a part the cloud stored; its record stays, so a sender's
        re-send is still known (by digest) and its commitment still answered."""
        for path in self.files(part).values():
            path.unlink(missing_ok=True)
        fsync_folder(self.instances / part.folder)

    def refused(self, calling_ae: str, study_instance_uid: str | None,
                sop_instance_uid: str | None, status: int, rules: str | None) -> None:
        """Note an instance the gateway refused, for ``gateway status``."""
        line = json.dumps({"calling_ae": calling_ae, "study_instance_uid": study_instance_uid,
                           "sop_instance_uid": sop_instance_uid, "status": f"0x{status:04X}",
                           "rules": rules, "at": time.time()})
        with self._lock:
            with (self.root / REFUSALS).open("a", encoding="utf-8") as stream:
                stream.write(line + "\n")
                full = stream.tell() > REFUSALS_MAX_BYTES
            if full:
                (self.root / REFUSALS).replace(self.root / EARLIER_REFUSALS)

    def _save(self, folder: Path, part: StudyPart) -> None:
        write_durably(folder / RECORD, json.dumps(part.to_dict(), indent=1))

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

    def _make_folder(self, folder: Path) -> None:
        """Make ``folder`` and its missing parents, each made one durable in its parent."""
        missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
        for made in reversed(missing):
            made.mkdir(exist_ok=True)
            fsync_folder(made.parent)
