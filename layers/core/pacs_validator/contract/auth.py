"""Who may call ``/upload`` and ``/status``: the API's authentication modes and bearer tokens.

In ``TOKEN`` mode (the default) a caller sends ``Authorization: Bearer <token>`` and the
token must equal one of the tokens in the stack's Secrets Manager secret. The secret's
value is a JSON object mapping a label (who holds the token) to a token::

    {"initial": "Yx0…", "scanner-3": "k2P…"}

Several tokens are valid at once, so an operator rotates by adding a new one beside the old,
handing it out, and removing the old one later. ``IAM`` mode leaves authentication to API
Gateway (SigV4, ``AWS_IAM`` on the methods); ``NONE`` checks nothing (not for patient data).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from enum import Enum

BEARER = "bearer"
MIN_TOKEN_LENGTH = 16


class AuthMode(str, Enum):
    TOKEN = "TOKEN"
    IAM = "IAM"
    NONE = "NONE"


class AuthenticationError(Exception):
    """The caller did not prove who it is (answered with 401)."""


class TokenSecretError(ValueError):
    """The token secret is not a JSON object of tokens (an operator's mistake)."""


def auth_mode(text: str | None) -> AuthMode:
    """The mode named by ``API_AUTH``; unset means TOKEN, so forgetting it is safe."""
    try:
        return AuthMode((text or AuthMode.TOKEN.value).strip().upper())
    except ValueError as error:
        raise ValueError("API_AUTH must be TOKEN, IAM or NONE") from error


def tokens_from_secret(secret: str) -> list[str]:
    """The valid tokens in a secret value ``{"<label>": "<token>", ...}``.

    Values shorter than ``MIN_TOKEN_LENGTH`` are refused, so a typo cannot open the API
    to a guessable token."""
    try:
        document = json.loads(secret)
    except ValueError as error:
        raise TokenSecretError("the token secret is not JSON") from error
    if not isinstance(document, Mapping) or not document:
        raise TokenSecretError("the token secret must be a non-empty JSON object")
    tokens = list(document.values())
    if not all(isinstance(t, str) and len(t) >= MIN_TOKEN_LENGTH for t in tokens):
        raise TokenSecretError(f"every token must be a string of at least {MIN_TOKEN_LENGTH} "
                               "characters")
    return tokens


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        raise AuthenticationError("send Authorization: Bearer <token>")
    return token.strip()


def authenticate(authorization: str | None, tokens: list[str]) -> None:
    """Accept the header when its bearer token equals one of ``tokens``.

    Every token is compared, in constant time, whatever matched, so timing tells nothing
    about which token (or how much of one) was right."""
    presented = bearer_token(authorization).encode("utf-8", "surrogatepass")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented, token.encode("utf-8", "surrogatepass"))
    if not matched:
        raise AuthenticationError("the bearer token is not valid")
