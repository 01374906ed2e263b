"""DynamoDB adapter: the status table, one small item per study plus one item per file,
under the study's key.

The study item (sort key ``study``) holds the state, the verdict, counters and a timeline of
state changes; it never grows with the number of files. Each file's verdict is its own item
(:mod:`pacs_validator.aws.file_records`), so every write costs the same whatever the study
size.

Arrival of a file writes its item and counts it on the study item if the study is still
receiving (see :meth:`DynamoDBStatusTable.record_file`); a re-upload of a name replaces its
record and counts nothing, and only the caller whose claim moves the study from RECEIVING to
VALIDATING runs the study-level checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from pacs_validator.aws.clients import Clients
from pacs_validator.aws.dynamodb_items import (
    DECLARATION_ITEM,
    STUDY_ITEM,
    assignments,
    epoch_seconds,
    item_key,
    plain,
    study_record,
    timestamp,
)
from pacs_validator.aws.errors import is_conditional_failure, service_errors
from pacs_validator.aws.file_records import FileRecords
from pacs_validator.aws.stored_instances import StoredInstances
from pacs_validator.aws.study_listing import StudyListing
from pacs_validator.contract.duplicates import StoredInstance
from pacs_validator.contract.objects import is_later
from pacs_validator.contract.records import StudyRecord
from pacs_validator.contract.states import OPEN_STATES, TERMINAL_STATES, State
from pacs_validator.contract.status_view import FilePage
from pacs_validator.contract.study_list import ListCursor, StudyPage
from pacs_validator.flow.ports import Arrival, StudyNotFound, UploadOutcome


def same_upload(record: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two file records come from one upload (one notification seen twice)."""
    return all(record.get(field) == other.get(field) for field in ("key_version", "version_id"))

OPEN_INDEX = "open-deadline-index"
OPEN_SHARD = "open"
OWNER_INDEX = "open-owner-index"
"""The open studies of each owner (``open_owner``), set and removed with ``open_shard``."""
KEPT_ASIDE_SHOWN = 20
REPLACE_ATTEMPTS = 3
"""Uploads of one name racing to replace its record: past this many lost races, the upload
is taken as stale (others, later, won)."""


class DynamoDBStatusTable:
    """The single writer of study state (the flow's
    :class:`~pacs_validator.flow.ports.StatusStore`).

    Every unfinished study is on the sparse ``open-deadline-index`` (``open_shard``) with the
    time by which it must move on (``deadline``): the upload deadline while it receives files,
    then ``processing_deadline_seconds`` after each later change of state. The sweep finds
    the studies past theirs; a finished study leaves the index.
    """

    def __init__(self, table_name: str, retention_days: int = 30,
                 clients: Clients | None = None, processing_deadline_seconds: int = 7200) -> None:
        self.table_name = table_name
        self.clients = clients or Clients()
        self.retention_seconds = retention_days * 86400
        self.processing_deadline_seconds = processing_deadline_seconds

    @property
    def table(self) -> Any:
        """The boto3 Table resource (:meth:`~pacs_validator.aws.clients.Clients.table`)."""
        return self.clients.table(self.table_name)

    @property
    def file_records(self) -> FileRecords:
        return FileRecords(self.table, self.retention_seconds)

    @property
    def stored_index(self) -> StoredInstances:
        return StoredInstances(self.table)

    @service_errors()
    def stored_instances(self, owner: str | None, sop_instance_uids: Sequence[str]
                         ) -> dict[str, StoredInstance]:
        """The index entries of those of ``sop_instance_uids`` ``owner`` stored before (see
        :mod:`~pacs_validator.aws.stored_instances`)."""
        return self.stored_index.find(owner, sop_instance_uids)

    @service_errors()
    def enter_stored(self, owner: str | None, entry: StoredInstance) -> bool:
        """Enter one instance ``owner`` stored in the index; False when a study of the same
        owner stored it first."""
        return self.stored_index.enter(owner, entry)

    def _key(self, study_id: str) -> dict[str, str]:
        return item_key(study_id, STUDY_ITEM)

    @service_errors()
    def create(self, study_id: str, expected: int, deadline_seconds: int,
               manifest: bool = True, *, owner: str | None = None,
               largest_declared: int | None = None) -> bool:
        """A new study expecting ``expected`` files; False when the id already exists
        (a redelivered event). ``manifest`` says whether declared names are stored;
        ``owner``, the API caller that declared it, alone (with the admins) may read it.
        A plain drop has none. ``largest_declared``: the largest size declared, which
        caps each file a study-wide form lets in (``StudyWideForms``)."""
        now = epoch_seconds()
        item: dict[str, Any] = {
            **self._key(study_id),
            "state": State.AWAITING_UPLOAD.value,
            "status": None,
            "expected": expected,
            "received": 0,
            "manifest": manifest,
            "findings": [],
            "keys": {},
            "counts": {},
            "timeline": [{"state": State.AWAITING_UPLOAD.value, "at": timestamp()}],
            "created_at": now,
            "deadline": now + deadline_seconds,
            "open_shard": OPEN_SHARD,
            "expires_at": now + self.retention_seconds,
        }
        if owner is not None:
            item.update(owner=owner, open_owner=owner)
        if largest_declared is not None:
            item["largest_declared"] = largest_declared
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr("study_id").not_exists())
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    @service_errors()
    def claim_declaration(self, study_id: str, fingerprint: str) -> str:
        """Bind a client token's study id to a declaration's ``fingerprint`` (an item of its
        own beside the study's, written with the condition that none is there), or read the
        fingerprint bound before; it expires with the study."""
        key = item_key(study_id, DECLARATION_ITEM)
        item = {**key, "fingerprint": fingerprint,
                "expires_at": epoch_seconds() + self.retention_seconds}
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr("study_id").not_exists())
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            bound = self.table.get_item(Key=key, ConsistentRead=True)["Item"]
            return str(bound["fingerprint"])
        return fingerprint

    @service_errors()
    def open_studies(self, owner: str, at_most: int) -> int:
        """How many studies of ``owner`` are open, counted up to ``at_most`` (the index is
        read no further): a cap is checked at the cost of its own size in index keys."""
        kwargs: dict[str, Any] = {"IndexName": OWNER_INDEX, "Select": "COUNT",
                                  "KeyConditionExpression": Key("open_owner").eq(owner)}
        counted = 0
        while counted < at_most:
            page = self.table.query(**kwargs, Limit=at_most - counted)
            counted += int(page["Count"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return counted

    @service_errors()
    def get(self, study_id: str) -> dict[str, Any] | None:
        """The study item (small whatever the study size), read consistently."""
        item = self.table.get_item(Key=self._key(study_id), ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def study(self, study_id: str) -> StudyRecord | None:
        """The study item as a record (see :meth:`get`)."""
        item = self.get(study_id)
        return None if item is None else study_record(item)

    @service_errors()
    def record_file(self, study_id: str, name: str, record: dict[str, Any]) -> Arrival:
        """Store one upload's verdict and count it on its study (see
        :class:`~pacs_validator.flow.ports.UploadOutcome`). ``record["key_version"]`` (the
        notification's sequencer) tells a redelivered notification from another upload of
        the name, and orders the uploads of a name.

        Two uploads are the same when their sequencer and version id are; of two others, the
        one with the later sequencer wins, and with equal sequencers (LocalStack sends one
        for every notification) the one recorded last.

        A first upload is two small writes, not a transaction: the file item, then the count
        on the study item. A transaction would cost twice the capacity, and every arrival's
        would hold the study item, so that arrivals of one study would cancel each other.

        The same upload seen again while its study is receiving is counted again: only a
        retry gets here (Powertools' idempotency answers a redelivered notification first),
        and the try before may have stopped between its two writes. If it did not, the file
        is counted twice; the judge (:mod:`pacs_validator.flow.judging`) notices that from
        the file items and waits for the rest. Once the study is judged, it is REPEATED. A
        file left uncounted by a try that stopped between its writes and whose name was then
        uploaded again (a replacement counts nothing) is judged with its study when the
        study's deadline passes: the sweep finds every file item and gives the verdict.

        Another upload of a name replaces its record only in a transaction with the check
        that the study is still receiving: once the judge has read the records, none
        changes, so what is judged is what is stored; a later upload is kept aside.

        Raises StudyNotFound when the study is unknown or, for a first upload of the name,
        no longer receiving files.
        """
        previous = self.file_records.create(study_id, name, record)
        if previous is not None:
            settled = self._another_upload(study_id, name, record, previous)
            if settled is not None:
                return settled
        try:
            study = plain(self.table.update_item(
                Key=self._key(study_id),
                UpdateExpression=("SET #state = :receiving, "
                                  "receiving_at = if_not_exists(receiving_at, :now) "
                                  "ADD received :one"),
                ConditionExpression="#state IN (:awaiting, :receiving)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":receiving": State.RECEIVING.value, ":awaiting": State.AWAITING_UPLOAD.value,
                    ":now": timestamp(), ":one": 1},
                ReturnValues="ALL_NEW",
            )["Attributes"])
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            if previous is not None:  # the same upload: its study was judged since
                return self._arrival(UploadOutcome.REPEATED, self._existing(study_id))
            raise StudyNotFound(study_id) from error
        return self._arrival(UploadOutcome.COUNTED, study)

    def _another_upload(self, study_id: str, name: str, record: dict[str, Any],
                        previous: dict[str, Any]) -> Arrival | None:
        """What an upload of a name that has a record (``previous``) does; None when it is
        the same upload, to be counted (again: see :meth:`record_file`)."""
        for _ in range(REPLACE_ATTEMPTS):
            if same_upload(previous, record):
                return None
            if is_later(str(previous["key_version"]), str(record["key_version"])):
                return self._arrival(UploadOutcome.STALE, self._existing(study_id))
            replaced = self.file_records.replace(study_id, name, record, previous,
                                                 self._key(study_id))
            if replaced is False:
                return self.record_aside(study_id, name, UploadOutcome.LATE, record)
            if replaced:
                return self._arrival(UploadOutcome.REPLACED, self._existing(study_id))
            previous = self.file_records.get(study_id, name)  # another upload came between
        return self._arrival(UploadOutcome.STALE, self._existing(study_id))

    @service_errors()
    def record_aside(self, study_id: str, name: str, outcome: UploadOutcome,
                     record: dict[str, Any]) -> Arrival:
        """Count an upload kept aside (``late_uploads``, ``undeclared_uploads``) on the study
        item, and keep its item (see :meth:`FileRecords.keep_aside`); the file records and
        the verdict stay as they are. Raises StudyNotFound for an unknown study."""
        counter = f"{outcome.value}_uploads"
        try:
            study = plain(self.table.update_item(
                Key=self._key(study_id), UpdateExpression="ADD #counter :one",
                ConditionExpression=Attr("study_id").exists(),
                ExpressionAttributeNames={"#counter": counter},
                ExpressionAttributeValues={":one": 1}, ReturnValues="ALL_NEW")["Attributes"])
        except ClientError as error:
            if is_conditional_failure(error):
                raise StudyNotFound(study_id) from error
            raise
        self.file_records.keep_aside(study_id, name, outcome.value, record,
                                     int(study.get("late_uploads", 0))
                                     + int(study.get("undeclared_uploads", 0)))
        return self._arrival(outcome, study)

    def _existing(self, study_id: str) -> dict[str, Any]:
        study = self.get(study_id)
        if study is None:
            raise StudyNotFound(study_id)
        return study

    @staticmethod
    def _arrival(outcome: UploadOutcome, study: dict[str, Any]) -> Arrival:
        return Arrival(outcome, received=int(study["received"]),
                       expected=int(study["expected"]), owner=study.get("owner"))

    @service_errors()
    def mark_late(self, study_id: str, name: str) -> None:
        """Note on a file's record that it arrived after the study stopped receiving."""
        self.file_records.mark_late(study_id, name)

    @service_errors()
    def forget_file(self, study_id: str, name: str) -> None:
        """Remove a file record written under a study that does not exist."""
        self.file_records.forget(study_id, name)

    def files(self, study_id: str) -> Iterator[dict[str, Any]]:
        """Every file record of the study in name order, read consistently page by page."""
        return self.file_records.every(study_id)

    @service_errors()
    def file_page(self, study_id: str, limit: int, after: str | None = None,
                  kept_aside: bool = False) -> FilePage:
        """A page of the study's file records for ``GET /status``; with ``kept_aside``, also
        the first ``KEPT_ASIDE_SHOWN`` uploads kept aside (late or undeclared)."""
        page = self.file_records.page(study_id, limit, after)
        if not kept_aside:
            return page
        return FilePage(page.records, page.next_token,
                        self.file_records.aside(study_id, KEPT_ASIDE_SHOWN))

    @service_errors()
    def transition(
        self,
        study_id: str,
        state: State,
        expected: tuple[State, ...],
        reason: str | None = None,
        overdue_at: int | None = None,
        **fields: Any,
    ) -> StudyRecord | None:
        """Move to ``state`` if the study is in one of ``expected`` (and, with
        ``overdue_at``, still past its deadline then), setting ``fields`` (status, findings,
        keys, counts, ...): the item after the change, or None (nothing changed) when it was
        in another state or has moved on."""
        entry: dict[str, Any] = {"state": state.value, "at": timestamp()}
        if reason:
            entry["reason"] = reason
        if state not in OPEN_STATES and state not in TERMINAL_STATES:
            fields.update(open_shard=OPEN_SHARD,
                          deadline=epoch_seconds() + self.processing_deadline_seconds)
        return self._update(study_id, expected, {"state": state.value, **fields},
                            append_entry=entry, leave_open_index=state in TERMINAL_STATES,
                            overdue_at=overdue_at)

    @service_errors()
    def note_failure(self, study_id: str, status: int, reason: str) -> None:
        """Keep the last error of a study whose event will be retried; its state stays."""
        try:
            self.table.update_item(
                Key=self._key(study_id), UpdateExpression="SET last_error = :error",
                ConditionExpression=Attr("study_id").exists(),
                ExpressionAttributeValues={":error": {"status": status, "reason": reason,
                                                      "at": timestamp()}})
        except ClientError as error:
            if not is_conditional_failure(error):
                raise

    @service_errors()
    def settle(self, study_id: str, state: State, **fields: Any) -> StudyRecord | None:
        """Set ``fields`` on a study that is in ``state``, leaving its state as it is."""
        return self._update(study_id, (state,), fields)

    def _update(
        self,
        study_id: str,
        expected: tuple[State, ...],
        fields: dict[str, Any],
        append_entry: dict[str, Any] | None = None,
        leave_open_index: bool = False,
        overdue_at: int | None = None,
    ) -> StudyRecord | None:
        sets, names, values = assignments(fields)
        names["#state"] = "state"
        condition = ""
        if overdue_at is not None:  # a sweep acts only on what is still late when it acts
            values[":overdue_at"] = overdue_at
            condition = " AND deadline < :overdue_at"
        if append_entry is not None:
            values[":entry"] = [append_entry]
            sets.append("timeline = list_append(timeline, :entry)")
        expected_names = []
        for index, allowed in enumerate(expected):
            values[f":expected{index}"] = allowed.value
            expected_names.append(f":expected{index}")
        update = "SET " + ", ".join(sets)
        if leave_open_index:
            update += " REMOVE open_shard, open_owner"
        try:
            response = self.table.update_item(
                Key=self._key(study_id),
                UpdateExpression=update,
                ConditionExpression=f"#state IN ({', '.join(expected_names)}){condition}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return None
            raise
        return study_record(plain(response["Attributes"]))

    @service_errors()
    def chunk_done(self, study_id: str, index: int) -> int:
        """Mark chunk ``index`` of the study's storage work done; how many are done now.

        A set, not a counter: a chunk retried after a failure adds nothing twice."""
        response = self.table.update_item(
            Key=self._key(study_id),
            UpdateExpression="ADD chunks_done :chunk",
            ExpressionAttributeValues={":chunk": {str(index)}},
            ReturnValues="ALL_NEW",  # UPDATED_NEW says nothing when the chunk was there
        )
        return len(response["Attributes"]["chunks_done"])

    @service_errors()
    def overdue(self, now: int, limit: int) -> list[str]:
        """Ids of at most ``limit`` unfinished studies past their deadline, the earliest
        deadlines first (the index's order)."""
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "IndexName": OPEN_INDEX,
            "KeyConditionExpression": Key("open_shard").eq(OPEN_SHARD) & Key("deadline").lt(now),
        }
        while len(ids) < limit:
            page = self.table.query(**kwargs, Limit=limit - len(ids))
            ids.extend(str(item["study_id"]) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return ids

    @service_errors()
    def study_page(self, owner: str | None, limit: int, after: ListCursor | None = None,
                   study_instance_uid: str | None = None) -> StudyPage:
        """A page of ``GET /studies``: ``owner``'s studies, newest first, or every owner's
        when None (see :class:`~pacs_validator.aws.study_listing.StudyListing`)."""
        return StudyListing(self.table).page(owner, limit, after, study_instance_uid)
