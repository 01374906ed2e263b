"""The JSON body of an API request, checked before anything reads it.

Whatever a caller sends (no JSON, binary, deeply nested arrays, a form-encoded body, a
base64 flag on garbage, megabytes of it) ends in a :class:`RequestBodyError` carrying the
4xx status to answer: never an exception a handler would turn into a 5xx. Messages say what
is wrong with the body, never what it holds.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

JSON_MEDIA_TYPE = "application/json"


class RequestBodyError(ValueError):
    """A body the API does not accept; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _is_json_media_type(content_type: str | None) -> bool:
    """``application/json``, optionally with ``charset=utf-8`` (any case)."""
    if not content_type:
        return False
    media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
    charsets = [p.partition("=")[2].strip('"') for p in parameters if p.startswith("charset=")]
    return media_type == JSON_MEDIA_TYPE and all(c in ("utf-8", "utf8") for c in charsets)


def _body_bytes(body: str, is_base64: bool) -> bytes:
    if not is_base64:
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as error:  # lone surrogates
            raise RequestBodyError(400, "the body is not UTF-8 text") from error
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestBodyError(400, "the body is flagged base64 but is not valid base64") from error


def json_body(body: str | None, is_base64: bool, content_type: str | None,
              max_bytes: int) -> Any:
    """The decoded JSON value of a request body, or None when there is no body.

    Checked in this order: size (413, counted on the decoded bytes), content type (415:
    ``application/json`` only), base64 and UTF-8 (400), JSON syntax and nesting (400).
    """
    if body is None or body == "":
        return None
    if len(body) > 2 * max_bytes:  # cheap early refusal before decoding anything
        raise RequestBodyError(413, f"the body is larger than {max_bytes} bytes")
    if not _is_json_media_type(content_type):
        raise RequestBodyError(415, f"the body must be {JSON_MEDIA_TYPE} (UTF-8)")
    data = _body_bytes(body, is_base64)
    if len(data) > max_bytes:
        raise RequestBodyError(413, f"the body is larger than {max_bytes} bytes")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as error:
        raise RequestBodyError(400, "the body is not UTF-8 text") from error
    except RecursionError as error:
        raise RequestBodyError(400, "the body's JSON is nested too deeply") from error
    except ValueError as error:  # JSONDecodeError, over-long integers, NaN/Infinity
        raise RequestBodyError(400, "the body is not valid JSON") from error


def _no_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")
