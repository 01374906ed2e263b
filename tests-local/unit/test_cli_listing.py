"""``pacs-validator list`` and ``status <StudyInstanceUID>``, against a fake ``GET /studies``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pacs_validator.cli.main import main
from pacs_validator.transfer.client import HttpResponse, PacsClient

UID = "1.2.840.113619.2.55.3"
IDS = [f"{n:032x}" for n in range(1, 6)]


def entry(study_id: str, state: str = "STORED", uid: str | None = UID,
          status: int | None = 200) -> dict[str, Any]:
    return {"study_id": study_id, "study_instance_uid": uid, "study_instance_uids": int(bool(uid)),
            "owner": "site-a", "state": state, "status": status, "created_at": 1_800_000_000,
            "counts": {"declared": 3, "received": 3, "valid": 3, "invalid": 0}}


class FakeStudies:
    """``GET /studies`` answering ``pages`` in turn, remembering what it was asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *pages: list[dict[str, Any]]) -> None:
        self.pages = list(pages)
        self.asked: list[tuple[int | None, str | None, str | None]] = []
        self.statuses: list[str] = []
        monkeypatch.setattr(PacsClient, "studies", self.studies)
        monkeypatch.setattr(PacsClient, "full_status", self.full_status)
        monkeypatch.setenv("PACS_VALIDATOR_API", "http://127.0.0.1:9")

    def studies(self, limit: int | None = None, next_token: str | None = None,
                study_instance_uid: str | None = None) -> HttpResponse:
        self.asked.append((limit, next_token, study_instance_uid))
        index = int(next_token or 0)
        more = index + 1 < len(self.pages)
        body = {"studies": self.pages[index], "next": str(index + 1) if more else None}
        return HttpResponse(200, json.dumps(body).encode())

    def full_status(self, study_id: str) -> dict[str, Any]:
        self.statuses.append(study_id)
        return {"study_id": study_id, "state": "STORED", "status": 200, "findings": [],
                "counts": {"received": 3, "declared": 3}, "files": []}


def test_list_prints_a_line_per_study_and_the_states_counted(monkeypatch, capsys) -> None:
    FakeStudies(monkeypatch, [entry(IDS[0]), entry(IDS[1], "REJECTED", status=422)],
                [entry(IDS[2], "RECEIVING", uid=None, status=None)])
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [IDS[0], UID, "STORED", "200", "2027-01-15", "08:00",
                                "3/3", "file(s)"]
    assert lines[2].split()[:4] == [IDS[2], "-", "RECEIVING", "-"]
    assert lines[-1] == "3 studies: 1 RECEIVING, 1 REJECTED, 1 STORED"


def test_list_stops_at_its_limit_and_says_there_are_more(monkeypatch, capsys) -> None:
    fake = FakeStudies(monkeypatch, [entry(IDS[0]), entry(IDS[1])], [entry(IDS[2])])
    assert main(["list", "--limit", "2", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["study_id"] for s in document["studies"]] == IDS[:2] and document["more"]
    assert fake.asked == [(2, None, None)]


@pytest.mark.parametrize("limit", ["0", "-3", "many"])
def test_a_limit_below_one_is_a_usage_error(monkeypatch, limit: str) -> None:
    FakeStudies(monkeypatch, [])
    with pytest.raises(SystemExit) as exit_:
        main(["list", "--limit", limit])
    assert exit_.value.code == 2


def test_status_of_a_uid_is_the_status_of_its_one_study(monkeypatch, capsys) -> None:
    fake = FakeStudies(monkeypatch, [], [entry(IDS[3])])  # a search's empty page, then it
    assert main(["status", UID]) == 0
    assert fake.statuses == [IDS[3]]
    assert [asked[2] for asked in fake.asked] == [UID, UID]
    assert IDS[3] in capsys.readouterr().out


def test_status_of_a_uid_of_no_study_exits_1_with_a_hint(monkeypatch, capsys) -> None:
    fake = FakeStudies(monkeypatch, [])
    assert main(["status", UID]) == 1
    err = capsys.readouterr().err
    assert f"no study of yours has the StudyInstanceUID {UID}" in err
    assert "hint:" in err and "pacs-validator list" in err
    assert fake.statuses == []


def test_status_of_a_uid_of_several_studies_lists_them_and_exits_1(monkeypatch, capsys) -> None:
    fake = FakeStudies(monkeypatch, [entry(IDS[0]), entry(IDS[1], "REJECTED", status=422)])
    assert main(["status", UID]) == 1
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()[:2]] == IDS[:2]
    assert "several studies" in err and "STUDY_ID" in err
    assert fake.statuses == []


def test_status_of_a_study_id_asks_for_no_listing(monkeypatch) -> None:
    fake = FakeStudies(monkeypatch, [])
    assert main(["status", IDS[4]]) == 0
    assert fake.asked == [] and fake.statuses == [IDS[4]]
