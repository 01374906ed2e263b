"""The events that announce where a study stands, derived from its record alone."""

from __future__ import annotations

from pacs_validator.contract.events import DetailType, Event
from pacs_validator.contract.records import StudyCounts, StudyRecord
from pacs_validator.contract.states import State


def announcements(study: StudyRecord, uploads_bucket: str) -> list[Event]:
    """The events that announce the state a study is in, from its record alone.

    Publishing follows the change of state, so a retry that finds a study already past a
    step announces it again (the events' ids are the same, so consumers see one copy): an
    event refused by EventBridge is never lost with its study moved on. Every event carries
    the study's ``owner`` (the label of the caller that created it; None for a plain drop),
    so a consumer can route studies by who sent them.
    """
    return [Event(e.detail_type, {**e.detail, "owner": study.owner}, e.subject)
            for e in _events_of_state(study, uploads_bucket)]


def _events_of_state(study: StudyRecord, uploads_bucket: str) -> list[Event]:
    state, status = study.state, study.status or 0
    counts = study.counts or StudyCounts()
    validated = Event(DetailType.STUDY_VALIDATED, {"valid": state is not State.REJECTED
                                                   and state is not State.INCOMPLETE,
                                                   "status": status})
    if state is State.VALID:
        return [Event(DetailType.VALIDATION_SUCCESS, {
            "bucket": uploads_bucket, "files": counts.files, "instances": counts.instances,
            "status": status}), validated]
    if state in (State.REJECTED, State.INCOMPLETE):
        return [Event(DetailType.VALIDATION_FAILED, {
            "status": status, "state": state.value, "rules": study.rules,
            "prefix": study.keys["prefix"], "files": counts.files}), validated]
    processed = Event(DetailType.STUDY_PROCESSED, {"state": state.value, "status": status})
    if state is State.STORED and study.stored_as:
        return [validated, Event(DetailType.STUDY_PROCESSED, {
            "state": state.value, "status": status, "stored_as": study.stored_as})]
    if state is State.STORED:
        return [Event(DetailType.METADATA_EXTRACTED, {
                    "key": study.keys["metadata"], "series": study.series,
                    "instances": counts.instances}),
                Event(DetailType.STORAGE_COMPLETED, {
                    "prefix": study.keys["prefix"], "objects": counts.instances + 4,
                    "bytes": counts.bytes}),
                processed]
    return [processed] if state is State.FAILED else []
