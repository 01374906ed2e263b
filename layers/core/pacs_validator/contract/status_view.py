"""The ``GET /status`` body: what a caller may see of a study, and how its pages of per-file
verdicts are addressed (``next`` tokens).

The view is built from the study item and one page of file records as the status table
keeps them, so the API answers in the same shape whatever stores the records.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pacs_validator.contract.names import safe_name
from pacs_validator.contract.states import State

STATUS_PAGE_BYTES = 200_000
"""A page of ``GET /status`` stops adding files at this many bytes (API responses ≤ 256 KB)."""
ASIDE_KINDS = ("late", "undeclared")
"""Uploads kept aside, each counted on the study item as ``<kind>_uploads``."""
PREVIEW_LINKS_MAX = 20
"""Series previews linked per status answer: with the session token a presigned URL is
about 1.5 KB, so the links stay small next to a page of file verdicts. ``previews_truncated``
says when a study has more; ``metadata.json`` lists every preview key."""


class PageTokenError(ValueError):
    """A ``next`` token that this table did not hand out."""


@dataclass(frozen=True)
class FilePage:
    """One page of a study's file records, and where the next one starts (or None)."""

    records: list[dict[str, Any]]
    next_token: str | None
    kept_aside: list[dict[str, Any]] | None = None
    """On the first page of a study that has them: uploads kept aside (late, undeclared)."""


def encode_token(name: str) -> str:
    """The ``next`` token of the page that starts after the file named ``name``."""
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The file name a ``next`` token starts after. Tokens are handed out for file records
    only, whose names are as :func:`safe_name` makes them (ASCII, at most 128 characters),
    so any other name is refused here: it keeps the sort key the table is asked to start
    after (``file#<name>``) far below DynamoDB's 1,024-byte limit for one, where a long
    Unicode name would have made DynamoDB refuse the query (a 5xx, not the caller's 400)."""
    try:
        name = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise PageTokenError("next is not a page token of this study") from error
    if not name or safe_name(name) != name:
        raise PageTokenError("next is not a page token of this study")
    return name


def timeline(study: dict[str, Any]) -> list[dict[str, Any]]:
    """The study's state changes in order; the first arrival of a file is RECEIVING."""
    entries = list(study.get("timeline", []))
    if study.get("receiving_at") is not None:
        entries.append({"state": State.RECEIVING.value, "at": study["receiving_at"]})
    return sorted(entries, key=lambda entry: float(entry["at"]))


def study_counts(study: dict[str, Any]) -> dict[str, Any]:
    """Files declared and received, uploads kept aside, and, once judged, the verdict's
    counts (instances, valid, invalid, bytes)."""
    return {"declared": study.get("expected"), "received": study.get("received", 0),
            **{kind: study[f"{kind}_uploads"] for kind in ASIDE_KINDS
               if study.get(f"{kind}_uploads")},
            **study.get("counts", {})}


def public_view(study: dict[str, Any], page: FilePage) -> dict[str, Any]:
    """The ``GET /status`` body: state, verdict, counts, study findings, timeline, keys and
    one page of per-file verdicts (the whole per-file report is ``validation.json``)."""
    return {
        "study_id": study["study_id"],
        "state": study["state"],
        "status": study.get("status"),
        "counts": study_counts(study),
        **({"stored_as": study["stored_as"]} if study.get("stored_as") else {}),
        "findings": study.get("findings", []),
        "timeline": timeline(study),
        "keys": study.get("keys", {}),
        "files": [
            {"name": record["name"], "status": record["status"],
             "findings": record["findings"],
             "findings_omitted": record.get("findings_omitted", 0),
             "late": bool(record.get("late")),
             "replacements": record.get("replacements", 0)}
            for record in page.records
        ],
        **({"kept_aside": [aside_view(item) for item in page.kept_aside]}
           if page.kept_aside else {}),
        "next": page.next_token,
    }


def has_kept_aside(study: dict[str, Any]) -> bool:
    """Whether uploads of the study were kept aside (late or undeclared)."""
    return any(study.get(f"{kind}_uploads") for kind in ASIDE_KINDS)


def aside_view(item: dict[str, Any]) -> dict[str, Any]:
    """An upload kept aside, as the status shows it: a finding says why it changed nothing."""
    late = item["outcome"] == "late"
    return {
        "name": item["name"], "outcome": item["outcome"], "uploads": item.get("uploads", 1),
        "last": item.get("last", {}),
        "finding": {
            "rule": "upload.replaced-after-judgment" if late else "upload.undeclared",
            "severity": "warning",
            "message": ("uploaded again after the study was judged: neither the verdict nor "
                        "the stored file changed" if late else
                        "a name the upload request did not declare: not validated"),
        },
    }


def linked_previews(prefix: str, keys: Iterable[str]) -> list[str]:
    """The series whose previews a status links: of the preview keys under ``prefix``, the
    first :data:`PREVIEW_LINKS_MAX` in key order, each as its key less ``prefix`` and
    ``.png``."""
    return [key[len(prefix):].removesuffix(".png") for key in sorted(keys)[:PREVIEW_LINKS_MAX]]
