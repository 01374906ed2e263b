"""The upload command's per-file forms: asked for in batches just before they are needed,
replaced when expiring or refused, never asked for a file already sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pacs_validator.transfer import sending as sending_module
from pacs_validator.transfer.client import ApiError
from pacs_validator.transfer.sending import StudyForms


class FormDesk:
    """Stands in for ``PacsClient.forms``: answers a fresh form per name asked for,
    valid ``expires_in`` seconds, and records each request's names."""

    def __init__(self, expires_in: int = 900) -> None:
        self.expires_in = expires_in
        self.requests: list[list[str]] = []
        self.refusal: ApiError | None = None

    def forms(self, study_id: str, names: Sequence[str]) -> dict[str, Any]:
        self.requests.append(list(names))
        if self.refusal is not None:
            raise self.refusal
        uploads = [{"name": name, "request": len(self.requests)} for name in names]
        return {"study_id": study_id, "uploads": uploads, "expires_in": self.expires_in}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(sending_module, "time", fake)
    return fake


NAMES = [f"IM{n:05d}.dcm" for n in range(250)]


def send_all(forms: StudyForms, names: Sequence[str]) -> list[dict[str, Any]]:
    used = []
    for name in names:
        used.append(forms.form(name))
        forms.sent(name)
    return used


def test_forms_are_asked_for_100_at_a_time_as_the_files_need_them(clock: Clock) -> None:
    desk = FormDesk()
    forms = StudyForms(desk, "s", NAMES)  # type: ignore[arg-type]
    forms.keep({"uploads": [{"name": n} for n in NAMES[:20]], "expires_in": 900}, clock.now)

    used = send_all(forms, NAMES)

    assert [u["name"] for u in used] == NAMES
    assert desk.requests == [NAMES[20:120], NAMES[120:220], NAMES[220:]]


def test_expiring_forms_of_unsent_files_are_replaced_in_one_request(clock: Clock) -> None:
    desk = FormDesk()
    forms = StudyForms(desk, "s", NAMES[:30])  # type: ignore[arg-type]
    send_all(forms, NAMES[:10])
    clock.now += 900 - sending_module.EXPIRY_MARGIN  # every form kept is about to expire

    send_all(forms, NAMES[10:30])

    assert desk.requests == [NAMES[:30], NAMES[10:30]]  # never one for a file already sent


def test_one_refused_form_replaces_every_form_kept_as_early_in_one_request(
        clock: Clock) -> None:
    desk = FormDesk()
    forms = StudyForms(desk, "s", NAMES[:5])  # type: ignore[arg-type]
    kept = [forms.form(name) for name in NAMES[:3]]  # three files in flight

    fresh = [forms.refused(name, form) for name, form in zip(NAMES[:3], kept, strict=True)]

    assert desk.requests == [NAMES[:5], NAMES[:5]]  # the refusal asked for all five, once
    assert [f["request"] for f in fresh] == [2, 2, 2]
    assert forms.form(NAMES[4])["request"] == 2


def test_forms_ending_at_the_deadline_are_used_until_s3_refuses_them(clock: Clock) -> None:
    desk = FormDesk(expires_in=sending_module.EXPIRY_MARGIN)  # the deadline is a minute away
    forms = StudyForms(desk, "s", NAMES[:5])  # type: ignore[arg-type]

    send_all(forms, NAMES[:5])

    assert desk.requests == [NAMES[:5]]


def test_a_request_the_api_refused_is_not_made_again(clock: Clock) -> None:
    desk = FormDesk()
    desk.refusal = ApiError(409, "the study is INCOMPLETE")
    forms = StudyForms(desk, "s", NAMES[:3])  # type: ignore[arg-type]

    for name in NAMES[:3]:
        with pytest.raises(ApiError):
            forms.form(name)

    assert len(desk.requests) == 1
