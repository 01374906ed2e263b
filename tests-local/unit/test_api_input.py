"""What the API accepts from a caller, judged without AWS: bearer tokens and JSON bodies."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pacs_validator.aws.runtime.settings import load_settings
from pacs_validator.contract.api_request import RequestBodyError, json_body
from pacs_validator.contract.auth import (
    ANONYMOUS,
    AuthenticationError,
    AuthMode,
    Caller,
    TokenSecretError,
    admin_principals,
    auth_mode,
    authenticate,
    bearer_token,
    iam_caller,
    token_book,
)
from pacs_validator.contract.keys import is_study_id, study_id_for_token
from pacs_validator.contract.status_view import PageTokenError, decode_token, encode_token
from pacs_validator.contract.upload_request import (
    DeclaredFile,
    UploadRequestError,
    client_token,
    declaration_fingerprint,
    requested_deadline,
)

BOOK = token_book(json.dumps({"admins": ["ops"], "ops": "a" * 16, "site-b": "b" * 32}))


@pytest.mark.parametrize("header", ["Bearer " + "a" * 16, "bearer  " + "b" * 32 + " "])
def test_a_bearer_token_of_the_secret_is_accepted_whatever_the_scheme_case(header: str) -> None:
    assert authenticate(header, BOOK).identity in {"ops", "site-b"}


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic " + "a" * 16,
                                    "Bearer " + "a" * 15, "Bearer " + "a" * 17, "a" * 16,
                                    "Bearer \ud800"])
def test_anything_else_is_refused(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        authenticate(header, BOOK)


def test_the_token_is_what_follows_the_scheme() -> None:
    assert bearer_token("Bearer  tok en ") == "tok en"


def test_the_caller_is_the_label_of_its_token_and_admins_are_named_in_the_secret() -> None:
    assert authenticate("Bearer " + "a" * 16, BOOK) == Caller("ops", admin=True)
    assert authenticate("Bearer " + "b" * 32, BOOK) == Caller("site-b", admin=False)


def test_both_tokens_of_a_rotating_label_identify_it() -> None:
    book = token_book(json.dumps({"site-a": ["o" * 20, "n" * 20], "site-b": "b" * 20}))
    for token in ("o" * 20, "n" * 20):
        assert authenticate(f"Bearer {token}", book) == Caller("site-a")


def test_the_first_format_still_works_without_admins() -> None:
    book = token_book(json.dumps({"initial": "x" * 48, "scanner": "y" * 20}))
    assert authenticate("Bearer " + "x" * 48, book) == Caller("initial", admin=False)
    assert authenticate("Bearer " + "y" * 20, book) == Caller("scanner", admin=False)


@pytest.mark.parametrize("secret", [
    "", "not json", "[]", "{}", '{"a": 1}', json.dumps({"a": "short"}),
    json.dumps({"a": ["x" * 20, "y" * 20, "z" * 20]}), json.dumps({"a": []}),
    json.dumps({"a": ["x" * 20, 5]}), json.dumps({"admins": ["a"]}),
    json.dumps({"admins": "a", "a": "x" * 20}), json.dumps({"admins": ["b"], "a": "x" * 20}),
    json.dumps({"anonymous": "x" * 20}), json.dumps({"site a": "x" * 20}),
    json.dumps({"arn:aws:iam::1:user/a": "x" * 20}), json.dumps({"a": "x" * 20, "b": "x" * 20}),
])
def test_a_secret_that_is_not_an_object_of_labelled_long_tokens_is_refused(secret: str) -> None:
    with pytest.raises(TokenSecretError) as refused:
        token_book(secret)
    assert "x" * 20 not in str(refused.value)


def test_a_caller_reads_its_own_studies_and_an_admin_every_one() -> None:
    site = Caller("site-a")
    assert site.may_read("site-a")
    assert not site.may_read("site-b")
    assert not site.may_read(None)  # a plain drop
    assert Caller("ops", admin=True).may_read("site-a")
    assert Caller("ops", admin=True).may_read(None)


def test_an_iam_caller_is_its_principal_and_none_mode_everyone_anonymous() -> None:
    arn = "arn:aws:iam::123456789012:user/site-a"
    assert iam_caller(arn) == Caller(arn)
    with pytest.raises(AuthenticationError):
        iam_caller(None)
    assert ANONYMOUS.identity == "anonymous" and ANONYMOUS.admin


ROLE = "arn:aws:iam::123456789012:role/site-a"


@pytest.mark.parametrize("arn", ["arn:aws:sts::123456789012:assumed-role/site-a/session-1",
                                 "arn:aws:sts::123456789012:assumed-role/site-a/i-0abc@x",
                                 "arn:aws:iam::123456789012:role/sites/eu/site-a", ROLE])
def test_every_session_of_a_role_and_the_role_itself_are_one_iam_caller(arn: str) -> None:
    assert iam_caller(arn) == Caller(ROLE)


def test_roles_of_other_accounts_or_partitions_stay_apart() -> None:
    assert iam_caller("arn:aws:sts::999999999999:assumed-role/site-a/s").identity \
        == "arn:aws:iam::999999999999:role/site-a"
    assert iam_caller("arn:aws-cn:sts::123456789012:assumed-role/site-a/s").identity \
        == "arn:aws-cn:iam::123456789012:role/site-a"


def test_admin_principals_are_roles_and_users_and_their_sessions_are_admins() -> None:
    admins = admin_principals(f" {ROLE.replace('role/', 'role/ops/')}, "
                              "arn:aws:iam::123456789012:user/alice,")
    assert admins == {ROLE, "arn:aws:iam::123456789012:user/alice"}
    assert iam_caller("arn:aws:sts::123456789012:assumed-role/site-a/any", admins).admin
    assert iam_caller("arn:aws:iam::123456789012:user/alice", admins).admin
    assert not iam_caller("arn:aws:iam::123456789012:user/bob", admins).admin
    assert admin_principals("") == frozenset()


@pytest.mark.parametrize("text", ["site-a", "arn:aws:sts::123456789012:assumed-role/ops/s",
                                  "arn:aws:iam::123456789012:root", f"{ROLE},*"])
def test_admin_principals_refuse_anything_but_role_and_user_arns(text: str) -> None:
    with pytest.raises(ValueError, match="ADMIN_PRINCIPALS"):
        admin_principals(text)


def test_the_mode_defaults_to_token_and_refuses_unknown_names() -> None:
    assert auth_mode(None) is AuthMode.TOKEN
    assert auth_mode(" iam ") is AuthMode.IAM
    with pytest.raises(ValueError, match="API_AUTH"):
        auth_mode("OPEN")


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=UTF-8",
                                          'application/json; charset="utf8"'])
def test_json_bodies_are_read_with_a_json_content_type(content_type: str) -> None:
    assert json_body('{"a": [1]}', False, content_type, 100) == {"a": [1]}
    encoded = base64.b64encode(b'{"a": [1]}').decode()
    assert json_body(encoded, True, content_type, 100) == {"a": [1]}


def test_no_body_is_none_whatever_the_content_type() -> None:
    assert json_body(None, False, None, 10) is None
    assert json_body("", True, "text/plain", 10) is None


@pytest.mark.parametrize(
    ("body", "is_base64", "content_type", "status"),
    [
        ("x" * 101, False, "application/json", 413),
        ("x" * 201, False, "text/plain", 413),  # refused for its size before anything else
        ("é" * 60, False, "application/json", 413),  # 120 bytes
        ("{}", False, None, 415),
        ("{}", False, "application/jsonx", 415),
        ("{}", False, "application/json; charset=utf-16", 415),
        ("{", False, "application/json", 400),
        ("[" * 50, False, "application/json", 400),
        ("NaN", False, "application/json", 400),
        ("\ud800", False, "application/json", 400),
        ("!!!!", True, "application/json", 400),
        (base64.b64encode(b"\xff").decode(), True, "application/json", 400),
    ],
)
def test_unreadable_bodies_carry_their_status(body: str, is_base64: bool,
                                              content_type: str | None, status: int) -> None:
    with pytest.raises(RequestBodyError) as raised:
        json_body(body, is_base64, content_type, 100)
    assert raised.value.status == status


def test_the_token_cache_and_study_cap_are_settings_with_defaults() -> None:
    config = Path(__file__).resolve().parents[2] / "functions" / "api" / "config.json"
    defaults = load_settings(config, {})
    assert (defaults.token_cache_seconds, defaults.max_study_bytes) == (300, 100 * 1024**3)
    local = load_settings(config, {"TOKEN_CACHE_SECONDS": "5", "MAX_STUDY_BYTES": "1000"})
    assert (local.token_cache_seconds, local.max_study_bytes) == (5, 1000)


def test_a_deadline_is_asked_for_between_the_minimum_and_the_deployments() -> None:
    assert requested_deadline({}, 60, 3600) == 3600
    assert requested_deadline({"deadline_seconds": 60}, 60, 3600) == 60
    with pytest.raises(UploadRequestError, match="from 60 to 3600"):
        requested_deadline({"deadline_seconds": 1}, 60, 3600)
    # a deployment deadline under the minimum is still the default, and the lowest asked for
    assert requested_deadline({}, 60, 30) == 30
    with pytest.raises(UploadRequestError, match="from 30 to 30"):
        requested_deadline({"deadline_seconds": 29}, 60, 30)


@pytest.mark.parametrize("token", ["a", "gw-01.CT_2024-05-01_0001", "x" * 64, "A.b_c-9"])
def test_a_client_token_of_1_to_64_safe_characters_is_taken(token: str) -> None:
    assert client_token({"files": [], "client_token": token}) == token


@pytest.mark.parametrize("token", ["", "x" * 65, "a b", "a/b", "a:b", "é", "a\n", 7, None,
                                   ["a"], True])
def test_any_other_client_token_is_refused_naming_the_rule(token: object) -> None:
    with pytest.raises(UploadRequestError, match=r"^client_token must be 1 to 64 letters, "
                                                 r"digits, '\.', '_' or '-'$"):
        client_token({"files": [], "client_token": token})


def test_a_declaration_without_a_client_token_has_none() -> None:
    assert client_token({"files": []}) is None
    assert client_token([]) is None


def test_a_tokens_study_id_is_ours_and_differs_by_owner_and_token() -> None:
    ids = {study_id_for_token(owner, token) for owner in ("site-a", "site-b", "site-a/x")
           for token in ("t1", "T1", "x.t1")}
    assert len(ids) == 9
    assert all(is_study_id(study_id) for study_id in ids)
    assert study_id_for_token("site-a", "t1") == study_id_for_token("site-a", "t1")


def test_a_declarations_fingerprint_tells_files_sizes_order_and_deadline_apart() -> None:
    a, b = DeclaredFile("a.dcm", 10), DeclaredFile("b.dcm", 20)
    first = declaration_fingerprint([a, b], 600)
    assert first == declaration_fingerprint([DeclaredFile("a.dcm", 10), b], 600)
    others = {declaration_fingerprint(files, deadline) for files, deadline in [
        ([a], 600), ([b, a], 600), ([a, DeclaredFile("b.dcm", 21)], 600), ([a, b], 601)]}
    assert first not in others and len(others) == 4
    assert "a.dcm" not in first and len(first) == 64


@pytest.mark.parametrize("name", ["a.dcm", "IM_0001", "x" * 128])
def test_a_page_token_of_a_file_name_decodes_to_it(name: str) -> None:
    assert decode_token(encode_token(name)) == name


@pytest.mark.parametrize("name", ["", "x" * 129, "\U0001f9e0" * 256, "é.dcm", ".hidden", "a/b"])
def test_a_page_token_of_no_file_name_the_api_gives_is_refused(name: str) -> None:
    with pytest.raises(PageTokenError):
        decode_token(encode_token(name))
