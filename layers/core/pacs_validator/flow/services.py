"""What every step of the flow works with: the rules, the ports, the deployment's limits,
and the one way a study's events are published."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pacs_validator.contract.duplicates import DuplicatePolicy
from pacs_validator.contract.events import Event
from pacs_validator.contract.records import StudyRecord
from pacs_validator.flow.announcements import announcements
from pacs_validator.flow.ports import ChunkDispatcher, EventPublisher, ObjectStore, StatusStore

if TYPE_CHECKING:  # imported when the configuration is built (see Services.config)
    from pacs_validator.dicom.config import ValidatorConfig


@dataclass
class Services:
    """The collaborators of one pipeline; the steps share one instance, so replacing a
    port here (a test's dispatcher, say) replaces it for all of them."""

    validator_overrides: dict[str, Any]
    """What the deployment changes of the validator's configuration (see :attr:`config`)."""
    table: StatusStore
    uploads: ObjectStore
    store: ObjectStore
    publisher: EventPublisher
    dispatcher: ChunkDispatcher
    upload_deadline_seconds: int
    """How long a plain drop (a one-file study nobody declared) may take to arrive."""
    chunk_instances: int
    """Most files one invocation copies when a study is stored or rejected."""
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.REFUSE
    """What a study gets for an instance stored before with other bytes
    (:mod:`~pacs_validator.flow.duplicates`)."""
    fingerprint_secret: Callable[[], bytes] | None = None
    """Reads the deployment's fingerprint key (None: none is deployed, as in a test of one
    invocation; a key of this process's own is then used)."""
    _holding: threading.local = field(default_factory=threading.local, init=False, repr=False)
    """The events held by the running thread's block (one per invocation on Lambda; tests run
    arrivals in threads)."""

    @cached_property
    def config(self) -> ValidatorConfig:
        """The validator's configuration, built on first use: building it checks keywords
        with pydicom, and storing a chunk needs it only to render a preview, so the
        descriptor loads no pydicom until a chunk has one."""
        from pacs_validator.dicom.config import build_config

        return replace(build_config(self.validator_overrides),
                       fingerprint_key=self.fingerprint_key)

    @cached_property
    def fingerprint_key(self) -> bytes:
        """The key of fingerprints and key digests (see ``validation.fingerprint``): the
        deployment's, read once, so that every invocation's fingerprints compare."""
        if self.fingerprint_secret is None:
            return secrets.token_bytes(32)
        return self.fingerprint_secret()

    def publish(self, study_id: str, *events: Event) -> None:
        """Publish ``events`` of the study now, or with the others when events are held
        (see :meth:`events_held`)."""
        held: dict[str, list[Event]] | None = getattr(self._holding, "events", None)
        if held is None:
            self.publisher.publish(study_id, *events)
        else:
            held.setdefault(study_id, []).extend(events)

    def announce(self, study: StudyRecord) -> None:
        """Publish the events of the state ``study`` is in (see :func:`announcements`)."""
        events = announcements(study, self.uploads.bucket)
        if events:
            self.publish(study.study_id, *events)

    @contextlib.contextmanager
    def events_held(self) -> Iterator[None]:
        """Hold the events published within the block and publish them together at its
        end, one call per study (the publisher splits what exceeds one call): an arrival
        that completes its study announces its upload and the verdict in one request.

        Every event still follows the change it announces. When the block raises, what was
        held is published all the same, as far as the bus takes it, and the block's own
        error is the one raised: the retry announces again whatever was not taken."""
        held: dict[str, list[Event]] = {}
        self._holding.events = held
        try:
            yield
        except BaseException:
            self._holding.events = None
            with contextlib.suppress(Exception):
                self._publish_all(held)
            raise
        self._holding.events = None
        self._publish_all(held)

    def _publish_all(self, held: dict[str, list[Event]]) -> None:
        for study_id, events in held.items():
            self.publisher.publish(study_id, *events)
