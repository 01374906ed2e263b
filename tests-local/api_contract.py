"""The API's OpenAPI document (``docs/api/openapi.yaml``) as the tests hold every answer to it.

:func:`check_answer` finds the operation of a request (method and path), and checks the
answer's status is one the operation declares, its media type one declared for that status,
its body valid against that media type's schema and its required headers present and
valid. A request no operation matches is held to ``x-unrouted``: API Gateway's answer for
one that went through it (the end-to-end tests), the function's own for one handed to the
function directly (the integration tests). JSON Schema (2020-12, OpenAPI 3.1's dialect) is
checked with ``jsonschema`` against the document itself, so its ``$ref``\\ s resolve as they
are written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "docs" / "api" / "openapi.yaml"
SPEC_URI = "urn:pacs-validator:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class ContractViolation(AssertionError):
    """An answer the OpenAPI document does not allow."""


@cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text("utf-8"))
    return document


@cache
def _registry() -> Registry[Any]:
    return Registry().with_resource(SPEC_URI, Resource(contents=spec(), specification=DRAFT202012))


def _pointer(parts: tuple[str, ...]) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@cache
def _schema_validator(pointer: str) -> Draft202012Validator:
    """A validator of the schema at ``pointer`` in the document (its refs resolved there)."""
    return Draft202012Validator({"$ref": f"{SPEC_URI}#/{pointer}"}, registry=_registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def _resolved(node: Mapping[str, Any], at: tuple[str, ...]) -> tuple[Mapping[str, Any],
                                                                      tuple[str, ...]]:
    """An OpenAPI object (a response, a header) with its ``$ref`` followed, and where it is."""
    while "$ref" in node:
        parts = tuple(p.replace("~1", "/").replace("~0", "~")
                      for p in str(node["$ref"]).removeprefix("#/").split("/"))
        node, at = spec(), parts
        for part in parts:
            node = node[part]
    return node, at


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]


@cache
def _routes() -> tuple[Route, ...]:
    """Each operation's path as a pattern; trailing slashes are the same path, to API
    Gateway and to Powertools' REST resolver alike."""
    routes = []
    for template, item in spec()["paths"].items():
        regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template.rstrip("/")))
        routes.extend(Route(method, template, re.compile(f"^{regex}/*$"))
                      for method in METHODS if method in item)
    return tuple(routes)


def operation_responses(method: str, path: str, through_gateway: bool
                        ) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """The responses object the answer to ``method path`` (as sent: a parameter's ``%2F``
    stays in its segment) is held to, and where it is."""
    path = path or "/"
    for route in _routes():
        if route.method == method.lower() and route.pattern.match(path):
            at = ("paths", route.template, route.method, "responses")
            return spec()["paths"][route.template][route.method]["responses"], at
    at = ("x-unrouted", "gateway" if through_gateway else "responses")
    return spec()["x-unrouted"][at[1]], at


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def answer_problems(method: str, path: str, status: int, headers: Mapping[str, str],
                    body: bytes, *, through_gateway: bool) -> list[str]:
    """What is wrong with an answer against the document (empty when it conforms)."""
    responses, at = operation_responses(method, path, through_gateway)
    if str(status) not in responses:
        return [f"status {status} is not declared (declared: {', '.join(responses)})"]
    response, at = _resolved(responses[str(status)], (*at, str(status)))
    lower = {name.lower(): value for name, value in headers.items()}
    found = []
    for name, header in response.get("headers", {}).items():
        header, header_at = _resolved(header, (*at, "headers", name))
        if name.lower() not in lower:
            if header.get("required"):
                found.append(f"header {name} is missing")
            continue
        found.extend(f"header {name}: {e.message}" for e in _schema_validator(
            _pointer((*header_at, "schema"))).iter_errors(lower[name.lower()]))
    content = response.get("content", {})
    media_type = _media_type(lower.get("content-type"))
    if media_type not in content:
        return [*found, f"content type {media_type!r} is not declared ({', '.join(content)})"]
    document: Any
    if media_type == "application/json":
        try:
            document = json.loads(body)
        except ValueError:
            return [*found, "the body is not JSON"]
    else:
        document = body.decode("utf-8", errors="replace")
    validator = _schema_validator(_pointer((*at, "content", media_type, "schema")))
    found.extend(f"body/{'/'.join(map(str, e.absolute_path))}: {e.message}"
                 for e in validator.iter_errors(document))
    return found


def check_answer(method: str, path: str, status: int, headers: Mapping[str, str], body: bytes,
                 *, through_gateway: bool) -> None:
    """:class:`ContractViolation` for an answer the document does not allow."""
    found = answer_problems(method, path, status, headers, body,
                            through_gateway=through_gateway)
    if found:
        raise ContractViolation(f"{method} {path} answered {status} against "
                                f"docs/api/openapi.yaml: " + "; ".join(found[:5])
                                + f"; body: {body[:300]!r}")
