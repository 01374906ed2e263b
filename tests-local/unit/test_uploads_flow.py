"""The API's decisions in the flow (``flow/uploads.py``), over ports held in memory: who may
read a study, which forms a study gets, and what a caller may declare."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pacs_validator.contract.auth import Caller
from pacs_validator.contract.records import StudyRecord
from pacs_validator.contract.states import State
from pacs_validator.contract.upload_request import (
    DeclarationTooLarge,
    PerFileFormsOnly,
    TokenReused,
    TooManyOpenStudies,
    UndeclaredNames,
    UnreadableStudy,
)
from pacs_validator.flow.uploads import UploadRules, Uploads

NOW = 1_000_000
OWNER = Caller("clinic-a")
RULES = UploadRules(max_upload_bytes=1000, max_study_bytes=1500, max_files_per_study=10,
                    max_open_studies=2, upload_deadline_seconds=3600,
                    min_upload_deadline_seconds=60, presign_expiry_seconds=900,
                    per_file_forms_max=2, study_wide_forms=False)


class Table:
    """The status table's part the uploads use: studies by id, created as declared."""

    def __init__(self) -> None:
        self.studies: dict[str, StudyRecord] = {}
        self.declarations: dict[str, str] = {}

    def create(self, study_id: str, expected: int, deadline_seconds: int,
               manifest: bool = True, *, owner: str | None = None,
               largest_declared: int | None = None) -> bool:
        self.studies[study_id] = StudyRecord(
            study_id, State.AWAITING_UPLOAD, expected, manifest=manifest, owner=owner,
            deadline=NOW + deadline_seconds, largest_declared=largest_declared)
        return True

    def claim_declaration(self, study_id: str, fingerprint: str) -> str:
        return self.declarations.setdefault(study_id, fingerprint)

    def open_studies(self, owner: str, at_most: int) -> int:
        return min(at_most, sum(s.owner == owner for s in self.studies.values()))

    def study(self, study_id: str) -> StudyRecord | None:
        return self.studies.get(study_id)


class Bucket:
    """The uploads bucket's JSON documents, and a form signer that says what it signed."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}

    def put_json(self, key: str, document: Any, indent: int | None = 2) -> None:
        self.documents[key] = document

    def find_json(self, key: str) -> Any | None:
        return self.documents.get(key)

    def presigned_post(self, key: str, max_bytes: int, expires_in: int, min_bytes: int = 1
                       ) -> dict[str, Any]:
        return {"url": "https://uploads", "fields": {"key": key, "range": [min_bytes, max_bytes]}}


def uploads(**rules: Any) -> Uploads:
    bucket = Bucket()
    return Uploads(replace(RULES, **rules), Table(), bucket, bucket)  # type: ignore[arg-type]


def table_of(desk: Uploads) -> Table:
    """The in-memory table ``desk`` declares into."""
    assert isinstance(desk.table, Table)
    return desk.table


def files(*sizes: int) -> dict[str, Any]:
    return {"files": [{"name": f"{index}.dcm", "size": size} for index, size in enumerate(sizes)]}


def test_another_callers_study_is_not_found_as_an_unknown_one_and_an_admin_reads_it() -> None:
    desk = uploads()
    study_id = desk.declare(OWNER, files(10), NOW).forms.study_id

    with pytest.raises(UnreadableStudy) as other:
        desk.readable(Caller("clinic-b"), study_id)
    with pytest.raises(UnreadableStudy) as unknown:
        desk.readable(OWNER, "0" * 32)

    assert str(other.value) == str(unknown.value) == "no such study"
    assert (other.value.audit, unknown.value.audit) == ("refused", "not-found")
    assert desk.readable(Caller("ops", admin=True), study_id).owner == OWNER.identity


def test_a_declaration_gets_per_file_forms_for_its_first_files_and_no_study_wide_form() -> None:
    forms = uploads().declare(OWNER, files(10, 20, 30), NOW).forms

    answer = forms.answer()
    assert [f["name"] for f in answer["uploads"]] == ["0.dcm", "1.dcm"]
    assert answer["uploads"][0]["fields"]["range"] == [10, 10]  # exactly its declared size
    assert "upload" not in answer
    assert (answer["files"], answer["max_bytes"]) == (3, 30)


def test_the_study_wide_form_is_handed_out_only_where_the_deployment_allows_it() -> None:
    per_file = uploads()
    study_id = per_file.declare(OWNER, files(10), NOW).forms.study_id
    with pytest.raises(PerFileFormsOnly):
        per_file.renew(OWNER, study_id, None, NOW)

    wide = uploads(study_wide_forms=True)
    study_id = wide.declare(OWNER, files(10, 30), NOW).forms.study_id
    upload = wide.renew(OWNER, study_id, None, NOW).answer()["upload"]
    assert upload["key_prefix"] == f"incoming/{study_id}/"
    assert upload["fields"]["range"] == [1, 30]  # at most the largest size declared


def test_forms_are_renewed_by_declared_name_only() -> None:
    desk = uploads()
    study_id = desk.declare(OWNER, files(10, 20, 30), NOW).forms.study_id

    assert [f["name"] for f in desk.renew(OWNER, study_id, {"names": ["2.dcm"]},
                                          NOW).uploads] == ["2.dcm"]
    with pytest.raises(UndeclaredNames, match=r"^1 of the 2 names asked for were not declared"):
        desk.renew(OWNER, study_id, {"names": ["2.dcm", "9.dcm"]}, NOW)


def test_a_declaration_over_a_cap_is_refused_with_its_audit_word() -> None:
    desk = uploads()
    with pytest.raises(DeclarationTooLarge, match=r"^1 file\(s\) exceed the cap of 1000"):
        desk.declare(OWNER, files(1001), NOW)
    with pytest.raises(DeclarationTooLarge, match="add up to more than the cap of 1500"):
        desk.declare(OWNER, files(1000, 1000), NOW)
    desk.declare(OWNER, files(10), NOW)
    desk.declare(OWNER, files(10), NOW)
    with pytest.raises(TooManyOpenStudies) as refused:
        desk.declare(OWNER, files(10), NOW)
    assert refused.value.audit == "too-many-open"


def tokened(token: str, *sizes: int) -> dict[str, Any]:
    return {**files(*sizes), "client_token": token}


def test_a_token_declared_again_with_its_files_names_its_study_with_fresh_forms() -> None:
    desk = uploads()
    first = desk.declare(OWNER, tokened("t-1", 10, 20, 30), NOW)
    again = desk.declare(OWNER, tokened("t-1", 10, 20, 30), NOW + 5)

    assert (first.created, again.created) == (True, False)
    assert again.forms.study_id == first.forms.study_id
    assert again.forms.answer().keys() == first.forms.answer().keys()
    assert [f["name"] for f in again.forms.uploads] == ["0.dcm", "1.dcm"]
    assert again.forms.expires_in == 900
    assert len(table_of(desk).studies) == 1


def test_a_token_declared_again_with_other_files_or_deadline_is_refused() -> None:
    desk = uploads()
    desk.declare(OWNER, tokened("t-1", 10, 20), NOW)
    for other in (tokened("t-1", 10, 21), tokened("t-1", 20, 10), tokened("t-1", 10),
                  {**tokened("t-1", 10, 20), "deadline_seconds": 600}):
        with pytest.raises(TokenReused) as refused:
            desk.declare(OWNER, other, NOW)
    assert (refused.value.audit, refused.value.rule) == ("token-reused", "upload.token-reused")


def test_one_token_of_two_owners_makes_two_studies() -> None:
    desk = uploads()
    mine = desk.declare(OWNER, tokened("t-1", 10), NOW).forms.study_id
    theirs = desk.declare(Caller("clinic-b"), tokened("t-1", 99), NOW).forms.study_id

    assert mine != theirs
    assert desk.readable(OWNER, mine).owner == OWNER.identity
    with pytest.raises(UnreadableStudy):
        desk.readable(OWNER, theirs)


def test_a_study_that_takes_no_more_files_is_named_again_with_no_forms() -> None:
    desk = uploads(study_wide_forms=True)
    study_id = desk.declare(OWNER, tokened("t-1", 10), NOW).forms.study_id
    studies = table_of(desk).studies
    studies[study_id] = replace(studies[study_id], state=State.STORED, deadline=None)

    again = desk.declare(OWNER, tokened("t-1", 10), NOW)

    assert not again.created
    assert again.forms.answer() == {"study_id": study_id, "expires_in": 0, "max_bytes": 10,
                                    "files": 1, "uploads": []}


def test_a_declaration_made_again_counts_against_no_cap_of_open_studies() -> None:
    desk = uploads()
    desk.declare(OWNER, tokened("t-1", 10), NOW)
    desk.declare(OWNER, files(10), NOW)  # at its cap of 2 now

    assert not desk.declare(OWNER, tokened("t-1", 10), NOW).created
    with pytest.raises(TooManyOpenStudies):
        desk.declare(OWNER, tokened("t-2", 10), NOW)
    bound = desk.declare(OWNER, tokened("t-1", 10), NOW).forms.study_id
    assert table_of(desk).declarations.keys() == {bound}  # the refused t-2 bound nothing
