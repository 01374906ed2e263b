"""Storing a valid study under ``studies/<id>/``, or copying a rejected one to
``rejected/<id>/``, one chunk of files at a time.

The judge wrote the chunks (``work/<id>/chunks/<n>.json``). One chunk is done in place; more
are handed to the dispatcher, one invocation each. A chunk copies its files server-side and
keeps its part of ``metadata.json`` and ``dicom.json`` (``work/<id>/parts/<n>.json``); the
worker that completes the set of chunks assembles them from the parts and the reports, and
moves the study on. Every step is safe to repeat: copies overwrite, completion is a set.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pacs_validator.contract.duplicates import StoredInstance
from pacs_validator.contract.invocations import Work
from pacs_validator.contract.keys import (
    preview_key,
    rejected_key,
    rejected_prefix,
    stored_instance_key,
    stored_study_keys,
    study_key,
    work_key,
)
from pacs_validator.contract.records import PlannedFile, StudyCounts, StudyRecord
from pacs_validator.contract.states import State
from pacs_validator.contract.status_view import linked_previews
from pacs_validator.dicom.library_messages import library_messages_counted
from pacs_validator.dicom.metadata import InstanceDescription, assemble_metadata, first_of
from pacs_validator.flow.ports import SourceObject
from pacs_validator.flow.services import Services

if TYPE_CHECKING:
    from pacs_validator.dicom.previews import Preview

logger = logging.getLogger(__name__)

COPY_THREADS = 8
"""Server-side copies in flight at once within one chunk."""
HEAD_BYTES_AT_ONCE = 512 * 1024 * 1024
"""Bytes of instance heads one chunk's threads keep in ``/tmp`` at once. A head is usually
kilobytes, but one holding a large value other than pixel data (an encapsulated document, a
private blob) is as large as its file, and eight of those could fill the function's
ephemeral storage. A head larger than this is read while no other is held."""
DESCRIPTOR_MEMORY_BYTES = 1024 * 1024 * 1024
"""The descriptor's MemorySize (template.yaml; a test holds the two equal)."""
ESTIMATED_BYTES_AT_ONCE = DESCRIPTOR_MEMORY_BYTES * 3 // 8
"""What the instances one chunk's threads describe at once are estimated to cost, at most
(``estimated_bytes`` of their file records; an instance estimated at more is described
while no other is). Three eighths of the descriptor's memory: with the process's own
(about 100 MB), a chunk of the worst valid files stays within 60 % of it, where eight
threads each describing a file just under several caps at once peaked at 1.9 GB. A series'
preview (up to two frames of ``max_preview_frame_bytes``) is not in the estimate."""
Item = TypeVar("Item")
Result = TypeVar("Result")


class ByteBudget:
    """Lets threads hold at most ``limit`` bytes between them; a claim of more than
    ``limit`` waits until nothing else is held, then holds alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._changed = threading.Condition()

    @contextmanager
    def holding(self, size: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.held == 0 or self.held + size <= self.limit)
            self.held += size
        try:
            yield
        finally:
            with self._changed:
                self.held -= size
                self._changed.notify_all()


@dataclass(frozen=True)
class StoredStudy:
    """Where a valid study was stored, and how much of it."""

    keys: dict[str, Any]
    instances: int
    bytes: int


def judged_object(file: PlannedFile) -> SourceObject:
    """A file of a chunk as the judge planned it: pinned to the bytes it judged."""
    return SourceObject(file.key, file.size, version_id=file.version_id, etag=file.etag,
                        sha256=file.sha256)


def _in_parallel(work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    with ThreadPoolExecutor(max_workers=COPY_THREADS) as pool:
        return list(pool.map(work, items))


class Storage:
    """The copy work of a judged study, chunk by chunk, and its completion: a VALID study's
    files are stored (:meth:`_store`), a rejected one's copied aside (:meth:`_reject`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def start(self, study_id: str) -> StoredStudy | None:
        """Begin storing a VALID study: the stored study when one invocation was enough,
        None when its chunks were handed out (or the study is not VALID: nothing to do)."""
        study = self.services.table.study(study_id)
        if study is None or study.state is not State.VALID:
            logger.warning("study is not VALID; nothing to store", extra={"study_id": study_id})
            return None
        return self.run_chunks(study)

    def run_chunks(self, study: StudyRecord) -> StoredStudy | None:
        """One chunk is done here and now; more go to the dispatcher, one invocation each."""
        if study.chunks == 1:
            return self.process_chunk(study.study_id, 0, study)
        work = Work.STORE if study.state is State.VALID else Work.REJECT
        self.services.dispatcher.dispatch(study.study_id, study.chunks, work)
        return None

    def process_chunk(self, study_id: str, index: int, study: StudyRecord | None = None
                      ) -> StoredStudy | None:
        """Copy one chunk of a VALID study to ``studies/<id>/`` (with its descriptions), or of
        a rejected one (VALIDATING, its outcome settled) to ``rejected/<id>/``; the worker
        completing the last chunk finishes the study. Returns the stored study when this call
        finished storing it. ``study`` is the study when the caller has just read it."""
        study = study or self.services.table.study(study_id)
        if study is not None and study.state is State.VALID:
            return self._store(study, index)
        if study is not None and study.state is State.VALIDATING and study.outcome:
            self._reject(study, index)
            return None
        logger.warning("chunk for a study with nothing to copy",
                       extra={"study_id": study_id, "chunk": index})
        if study is not None:
            self.services.announce(study)  # a retry after the study moved on: its events again
        return None

    def _store(self, study: StudyRecord, index: int) -> StoredStudy | None:
        """Store chunk ``index`` of a VALID study, then, for the last chunk done, the study."""
        services, study_id = self.services, study.study_id
        single = study.counts is not None and study.counts.instances == 1
        part = self._store_chunk(study, self._planned(study_id, index), single)
        if study.chunks > 1:  # another worker may be the one to assemble
            services.uploads.put_json(work_key(study_id, "parts", f"{index}.json"), part,
                                      indent=None)
        if not self._last_done(study, index):
            return None
        return self._finish_storage(study, {index: part})

    def _reject(self, study: StudyRecord, index: int) -> None:
        """Copy chunk ``index`` of a rejected study aside, then, for the last chunk done,
        end the study."""
        services, study_id = self.services, study.study_id
        _in_parallel(lambda f: services.store.copy_from(
            services.uploads.bucket, judged_object(f), rejected_key(study_id, f.name)),
            self._planned(study_id, index))
        if self._last_done(study, index):
            self._finish_rejection(study)

    def _planned(self, study_id: str, index: int) -> list[PlannedFile]:
        """The files of chunk ``index``, as the judge planned them."""
        documents = self.services.uploads.get_json(work_key(study_id, "chunks", f"{index}.json"))
        return [PlannedFile.from_dict(document) for document in documents]

    def _last_done(self, study: StudyRecord, index: int) -> bool:
        """Mark chunk ``index`` done; whether it completed the set, so that its worker is the
        one to finish the study."""
        return study.chunks == 1 or \
            self.services.table.chunk_done(study.study_id, index) >= study.chunks

    def _store_chunk(self, study: StudyRecord, files: list[PlannedFile], single: bool
                     ) -> dict[str, Any]:
        """Copy the chunk's instances; their descriptions and DICOM JSON (the chunk's part
        of metadata.json and dicom.json), read from the head of the version validated, and
        the previews of the series whose middle instance is in the chunk.

        A preview's instance is read whole once, for its description and its preview; an
        instance without pixel data has no preview to render. Threads describe instances
        while their heads fit :data:`HEAD_BYTES_AT_ONCE` in ``/tmp`` and their estimated
        costs :data:`ESTIMATED_BYTES_AT_ONCE` in memory, and render previews one at a time,
        as a decoded frame can be large. pydicom's messages while the instances are
        read are counted, never logged as they are (they may quote values); the count
        covers the chunk's threads, which is why it is taken around them all."""
        # Imported here, as for a preview: pydicom, which a chunk of a rejected study and
        # an invocation that only announces again never load.
        from pacs_validator.dicom.description import describe, described_again, dicom_json

        services, study_id = self.services, study.study_id
        heads = ByteBudget(HEAD_BYTES_AT_ONCE)
        memory = ByteBudget(ESTIMATED_BYTES_AT_ONCE)
        one_preview_at_a_time = threading.Lock()

        def store_one(file: PlannedFile) -> tuple[InstanceDescription, Any, Preview | None]:
            target = stored_instance_key(study_id, str(file.sop_instance_uid), single)
            services.store.copy_from(services.uploads.bucket, judged_object(file), target)
            self._enter_stored(study, file)
            head = file.head
            previewed = file.preview and (head is None or "pixel_tag" in head)
            first_bytes = int(head["bytes"]) if head is not None and not previewed else None
            size = first_bytes if first_bytes is not None else file.size
            # Always claimed in this order, so that no two threads wait on each other.
            with heads.holding(size), memory.holding(file.estimated_bytes), \
                    services.uploads.downloaded(file.key, file.version_id,
                                                first_bytes) as download:
                instance = described_again(
                    download.path, head, size=file.size, sha256=file.sha256 or "",
                    transfer_syntax=file.transfer_syntax, config=services.config,
                    key=target)
                preview = None
                if previewed:
                    with one_preview_at_a_time:
                        preview = self._preview(download.path)
                return describe(instance), dicom_json(instance, bulk_data_uri=target), preview

        with library_messages_counted():
            stored = _in_parallel(store_one, files)
        previews: dict[str, str] = {}
        findings: list[dict[str, Any]] = []
        for file, (_, _, preview) in zip(files, stored, strict=True):
            if preview is None:
                continue
            findings.extend(f.to_dict() for f in preview.findings)
            if preview.png is not None:
                series = str(file.series_instance_uid)
                key = preview_key(study_id, series)
                services.store.put_bytes(key, preview.png, "image/png")
                previews[series] = key
        return {"descriptions": [d.to_dict() for d in first_of(d for d, _, _ in stored)],
                "dicom_json": [document for _, document, _ in stored],
                "previews": previews, "findings": findings}

    def _enter_stored(self, study: StudyRecord, file: PlannedFile) -> None:
        """Enter an instance just copied in its owner's index of stored instances, so that
        a later study of the owner sending it again is told
        (:mod:`~pacs_validator.flow.duplicates`). Of two studies storing one instance at
        once, the index keeps the first."""
        if not file.sop_instance_uid or not file.sha256:
            return
        entered = self.services.table.enter_stored(study.owner, StoredInstance(
            file.sop_instance_uid, study.study_id, file.sha256, file.version))
        if not entered:
            logger.warning("instance stored by another study first; the index keeps that one",
                           extra={"study_id": study.study_id})

    def _preview(self, path: Path) -> Preview:
        # Imported for a preview: pydicom, and numpy, Pillow and the decoders of the
        # imaging layer, which only the function storing valid studies has
        # (template.yaml). A chunk without a preview loads none of them.
        from pacs_validator.dicom.previews import render_preview

        return render_preview(path, self.services.config.rules,
                              limits=self.services.config.limits)

    def _finish_storage(self, study: StudyRecord,
                        at_hand: dict[int, dict[str, Any]]) -> StoredStudy:
        """``metadata.json`` and ``dicom.json`` from the chunks' parts (those ``at_hand`` are
        not read again), the reports, STORED."""
        services, study_id = self.services, study.study_id
        keys: dict[str, Any] = stored_study_keys(study_id)
        descriptions: list[InstanceDescription] = []
        previews: dict[str, str] = {}
        findings: list[dict[str, Any]] = list(study.findings)

        def dicom_json_pieces() -> Iterator[bytes]:
            separator = b"[\n"
            for index in range(study.chunks):
                part = at_hand.get(index) or services.uploads.get_json(
                    work_key(study_id, "parts", f"{index}.json"))
                descriptions.extend(InstanceDescription.from_dict(d)
                                    for d in part["descriptions"])
                previews.update(part["previews"])
                findings.extend(part["findings"])
                for document in part["dicom_json"]:
                    yield separator + json.dumps(document).encode()
                    separator = b",\n"
            yield b"[]\n" if separator == b"[\n" else b"\n]\n"

        services.store.put_stream(keys["dicom_json"], dicom_json_pieces(), "application/json")
        metadata = assemble_metadata(study_id, descriptions, previews)
        services.store.put_json(keys["metadata"], metadata)
        self._copy_reports(study, study_key)
        counts = study.counts or StudyCounts()
        linked = {"series": linked_previews(keys["previews"], previews.values()),
                  "count": len(previews)}  # what the status links, without listing the store
        stored = services.table.transition(study_id, State.STORED, (State.VALID,), keys=keys,
                                           series=metadata["counts"]["series"],
                                           findings=findings, previews=linked)
        if stored is not None:
            services.announce(stored)
        return StoredStudy(keys=keys, instances=counts.instances, bytes=counts.bytes)

    def _finish_rejection(self, study: StudyRecord) -> None:
        """The reports beside the copied files, then REJECTED (or INCOMPLETE), announced."""
        study_id = study.study_id
        self._copy_reports(study, rejected_key)
        keys = {"prefix": rejected_prefix(study_id),
                "validation_log": rejected_key(study_id, "validation.log"),
                "validation_json": rejected_key(study_id, "validation.json")}
        ended = self.services.table.transition(study_id, study.outcome or State.REJECTED,
                                               (State.VALIDATING,), keys=keys)
        if ended is not None:
            self.services.announce(ended)

    def _copy_reports(self, study: StudyRecord, key_for: Callable[[str, str], str]) -> None:
        services, study_id = self.services, study.study_id
        for leaf, size in study.reports.items():
            services.store.copy_from(services.uploads.bucket,
                                     SourceObject(work_key(study_id, leaf), size),
                                     key_for(study_id, leaf))
