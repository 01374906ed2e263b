"""What the API accepts from a caller, judged without AWS: bearer tokens and JSON bodies."""

from __future__ import annotations

import base64
import json

import pytest

from pacs_validator.contract.api_request import RequestBodyError, json_body
from pacs_validator.contract.auth import (
    AuthenticationError,
    AuthMode,
    TokenSecretError,
    auth_mode,
    authenticate,
    bearer_token,
    tokens_from_secret,
)

TOKENS = ["a" * 16, "b" * 32]


@pytest.mark.parametrize("header", ["Bearer " + "a" * 16, "bearer  " + "b" * 32 + " "])
def test_a_bearer_token_of_the_secret_is_accepted_whatever_the_scheme_case(header: str) -> None:
    authenticate(header, TOKENS)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic " + "a" * 16,
                                    "Bearer " + "a" * 15, "Bearer " + "a" * 17, "a" * 16,
                                    "Bearer \ud800"])
def test_anything_else_is_refused(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        authenticate(header, TOKENS)


def test_the_token_is_what_follows_the_scheme() -> None:
    assert bearer_token("Bearer  tok en ") == "tok en"


@pytest.mark.parametrize("secret", ["", "not json", "[]", "{}", '{"a": 1}',
                                    json.dumps({"a": "short"}), json.dumps({"a": ["x" * 20]})])
def test_a_secret_that_is_not_an_object_of_long_tokens_is_refused(secret: str) -> None:
    with pytest.raises(TokenSecretError):
        tokens_from_secret(secret)


def test_every_value_of_the_secret_is_a_token() -> None:
    assert tokens_from_secret(json.dumps({"initial": "x" * 48, "scanner": "y" * 20})) == [
        "x" * 48, "y" * 20]


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
