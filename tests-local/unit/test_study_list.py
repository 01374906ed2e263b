"""What a study is listed by, and the ``next`` tokens of ``GET /studies``."""

from __future__ import annotations

import pytest

from pacs_validator.contract.status_view import PageTokenError
from pacs_validator.contract.study_list import (
    ListCursor,
    decode_cursor,
    encode_cursor,
    is_dicom_uid,
    listed_uid,
)

STUDY = "0123456789abcdef" * 2


def test_a_study_is_listed_by_the_uid_most_of_its_files_tell_and_counts_the_others() -> None:
    assert listed_uid(["1.2", "1.3", "1.3", None]) == ("1.3", 2)
    assert listed_uid(["1.2", "1.3"]) == ("1.2", 2)  # a tie: the first told
    assert listed_uid([None, None]) == (None, 0)


def test_a_malformed_uid_is_counted_but_never_listed() -> None:
    assert listed_uid(["x.y", "x.y", "1.2"]) == ("1.2", 2)
    assert listed_uid(["1." * 40 + "1"]) == (None, 1)


@pytest.mark.parametrize(("text", "uid"), [
    ("1.2.840.10008.1.2", True), ("1", True), ("1." + "2" * 62, True),
    ("1." + "2" * 63, False), ("", False), ("1..2", False), (".1", False), ("1.2a", False),
])
def test_a_dicom_uid_is_digits_and_dots_within_64_characters(text: str, uid: bool) -> None:
    assert is_dicom_uid(text) is uid


@pytest.mark.parametrize("cursor", [ListCursor(1_800_000_000, STUDY),
                                    ListCursor(1_800_000_000, STUDY, owner="site-a")])
def test_a_cursor_comes_back_from_its_token_for_its_kind_of_listing_only(
        cursor: ListCursor) -> None:
    token = encode_cursor(cursor)
    every_owner = cursor.owner is not None
    assert decode_cursor(token, every_owner=every_owner) == cursor
    with pytest.raises(PageTokenError):
        decode_cursor(token, every_owner=not every_owner)


@pytest.mark.parametrize("token", ["", "!!", "bnVsbA", encode_cursor(ListCursor(-1, STUDY)),
                                   "WzEsIjAxMjMiXQ", "WyIxIiwiMDEyMyJd"])
def test_a_token_this_api_did_not_hand_out_is_refused(token: str) -> None:
    with pytest.raises(PageTokenError):
        decode_cursor(token, every_owner=False)
