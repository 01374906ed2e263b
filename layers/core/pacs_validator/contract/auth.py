"""Who may call ``/upload`` and ``/status``: the API's authentication modes, bearer tokens and
the caller each request is made by.

In ``TOKEN`` mode (the default) a caller sends ``Authorization: Bearer <token>`` and the
token must be one of the tokens in the stack's Secrets Manager secret. The secret's value is
a JSON object mapping a label (who holds the token: the caller's identity, the owner of the
studies it creates) to its token, or to a list of one or two tokens while that caller
rotates; the reserved key ``admins`` lists the labels that read every study::

    {"admins": ["initial"], "initial": "Yx0…", "site-a": ["k2P…", "q9Z…"]}

A secret without ``admins`` (the first format, ``{"initial": "Yx0…"}``) still works: its
callers see their own studies only. ``IAM`` mode leaves authentication to API Gateway
(SigV4, ``AWS_IAM`` on the methods) and the caller is the signing principal: an IAM user's
ARN, or for an assumed role the role's ARN (each session of a role is the same caller, so a
site's next session reads the studies its last one made); the principals the deployment
names (``AdminPrincipals``) read every study. ``NONE`` checks nothing and every caller is
:data:`ANONYMOUS`, which reads everything (not for patient data).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

BEARER = "bearer"
MIN_TOKEN_LENGTH = 16
MAX_TOKENS_PER_LABEL = 2
"""The token in use and, while rotating, its successor."""
ADMINS_KEY = "admins"
ANONYMOUS_LABEL = "anonymous"
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Labels are short names, never ARNs (which hold ``:``), so a token caller and an IAM
principal cannot share an identity."""
SESSION_ARN = re.compile(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/[^/]+")
"""A session of a role: ``assumed-role/ROLE/SESSION``."""
ROLE_ARN = re.compile(r"arn:([\w-]+):iam::(\d{12}):role/(?:.+/)?([^/]+)")
"""A role, any path: ``role/PATH/ROLE``."""
USER_ARN = re.compile(r"arn:[\w-]+:iam::\d{12}:user/.+")


class AuthMode(str, Enum):
    TOKEN = "TOKEN"
    IAM = "IAM"
    NONE = "NONE"


class AuthenticationError(Exception):
    """The caller did not prove who it is (answered with 401)."""


class TokenSecretError(ValueError):
    """The token secret is not a JSON object of labelled tokens (an operator's mistake)."""


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the owner recorded on the studies it creates."""

    identity: str
    admin: bool = False

    def may_read(self, owner: str | None) -> bool:
        """An admin reads every study; anyone else only the studies it created (a study
        without an owner, a plain S3 drop, is the admins' alone)."""
        return self.admin or (owner is not None and owner == self.identity)


ANONYMOUS = Caller(ANONYMOUS_LABEL, admin=True)
"""Every caller in NONE mode: nobody is checked, so nothing is hidden either."""


@dataclass(frozen=True)
class TokenBook:
    """The parsed token secret: each token with the label it identifies."""

    tokens: tuple[tuple[str, bytes], ...]
    admins: frozenset[str]


def auth_mode(text: str | None) -> AuthMode:
    """The mode named by ``API_AUTH``; unset means TOKEN, so forgetting it is safe."""
    try:
        return AuthMode((text or AuthMode.TOKEN.value).strip().upper())
    except ValueError as error:
        raise ValueError("API_AUTH must be TOKEN, IAM or NONE") from error


def _label_tokens(value: Any) -> list[str]:
    """A label's tokens: one string, or a list of one or two (old and new while rotating).

    Tokens shorter than ``MIN_TOKEN_LENGTH`` are refused, so a typo cannot open the API to
    a guessable token."""
    tokens = [value] if isinstance(value, str) else value
    if not (isinstance(tokens, list) and 1 <= len(tokens) <= MAX_TOKENS_PER_LABEL):
        raise TokenSecretError(f"each label maps to a token or a list of 1 to "
                               f"{MAX_TOKENS_PER_LABEL} tokens")
    if not all(isinstance(t, str) and len(t) >= MIN_TOKEN_LENGTH for t in tokens):
        raise TokenSecretError(f"every token must be a string of at least {MIN_TOKEN_LENGTH} "
                               "characters")
    return tokens


def _admin_labels(document: Mapping[str, Any], labels: set[str]) -> frozenset[str]:
    """The labels named by ``admins``: a list of labels of this secret (absent: none)."""
    admins = document.get(ADMINS_KEY, [])
    if not (isinstance(admins, list) and all(isinstance(a, str) for a in admins)):
        raise TokenSecretError(f"{ADMINS_KEY} must be a list of labels")
    if not set(admins) <= labels:
        raise TokenSecretError(f"{ADMINS_KEY} names a label that has no token")
    return frozenset(admins)


def token_book(secret: str) -> TokenBook:
    """The labelled tokens and the admins of a secret value (see the module's docstring)."""
    try:
        document = json.loads(secret)
    except ValueError as error:
        raise TokenSecretError("the token secret is not JSON") from error
    if not isinstance(document, Mapping):
        raise TokenSecretError("the token secret must be a JSON object")
    if ANONYMOUS_LABEL in document:  # NONE mode's caller, never a token's
        raise TokenSecretError(f"{ANONYMOUS_LABEL} is reserved and cannot be a label")
    labelled = {label: value for label, value in document.items() if label != ADMINS_KEY}
    if not labelled:
        raise TokenSecretError("the token secret must hold at least one labelled token")
    if not all(LABEL_PATTERN.fullmatch(label) for label in labelled):
        raise TokenSecretError(f"every label must match {LABEL_PATTERN.pattern}")
    tokens = tuple((label, token.encode("utf-8", "surrogatepass"))
                   for label, value in labelled.items() for token in _label_tokens(value))
    if len({token for _, token in tokens}) != len(tokens):
        raise TokenSecretError("a token appears twice: each identifies one label")
    return TokenBook(tokens, _admin_labels(document, set(labelled)))


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        raise AuthenticationError("send Authorization: Bearer <token>")
    return token.strip()


def authenticate(authorization: str | None, book: TokenBook) -> Caller:
    """The caller whose token the header's bearer token equals.

    Every token is compared, in constant time, whatever matched, so timing tells nothing
    about which token (or how much of one) was right."""
    presented = bearer_token(authorization).encode("utf-8", "surrogatepass")
    label: str | None = None
    for candidate, token in book.tokens:
        if hmac.compare_digest(presented, token):
            label = candidate
    if label is None:
        raise AuthenticationError("the bearer token is not valid")
    return Caller(label, admin=label in book.admins)


def principal(arn: str) -> str:
    """The identity an IAM principal's ARN stands for. A role and each of its sessions are
    ``arn:PARTITION:iam::ACCOUNT:role/NAME``: a session's ARN changes with every session
    and carries no role path, and a role's name is unique in its account whatever its path.
    Any other ARN (an IAM user's) is itself."""
    match = SESSION_ARN.fullmatch(arn) or ROLE_ARN.fullmatch(arn)
    if match is None:
        return arn
    partition, account, role = match.groups()
    return f"arn:{partition}:iam::{account}:role/{role}"


def admin_principals(text: str) -> frozenset[str]:
    """The identities of a comma-separated list of role and user ARNs (``AdminPrincipals``);
    :class:`ValueError` for anything else, so a typo cannot go unnoticed as an admin that
    never matches."""
    arns = [arn.strip() for arn in text.split(",") if arn.strip()]
    if not all(ROLE_ARN.fullmatch(arn) or USER_ARN.fullmatch(arn) for arn in arns):
        raise ValueError("ADMIN_PRINCIPALS must list IAM role or user ARNs, comma-separated")
    return frozenset(principal(arn) for arn in arns)


def iam_caller(principal_arn: str | None, admins: frozenset[str] = frozenset()) -> Caller:
    """IAM mode's caller: the principal API Gateway verified the signature of (a session
    as its role, see :func:`principal`), an admin when ``admins`` names it."""
    if not principal_arn:
        raise AuthenticationError("the request carries no IAM principal (sign it with SigV4)")
    identity = principal(principal_arn)
    return Caller(identity, admin=identity in admins)
