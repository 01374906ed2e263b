"""Download links for what a finished study left in the store: its reports, its metadata and
its series previews, as presigned GET URLs.

The status answer carries them so that a caller who may read the status (the upload page in
a browser, a script) can open ``metadata.json`` or show a preview without AWS credentials of
its own: an ``<img>`` cannot send the API's bearer token, but it can load a presigned URL.
Each link expires; asking for the status again gives fresh ones.
"""

from __future__ import annotations

from typing import Any

from pacs_validator.aws.s3 import S3Bucket
from pacs_validator.contract.status_view import PREVIEW_LINKS_MAX, linked_previews


def study_links(study: dict[str, Any], store: S3Bucket, expires_in: int) -> dict[str, Any]:
    """Presigned URLs for the objects named in the study's ``keys`` (prefixes aside), and
    for its first :data:`PREVIEW_LINKS_MAX` previews by SeriesInstanceUID; ``{}`` while the
    study has written nothing to the store.

    A stored study names its linked previews and how many it has (``previews``); one stored
    before it did has them listed (one S3 request)."""
    keys: dict[str, str] = study.get("keys", {})
    objects = {name: store.presigned_get(key, expires_in)
               for name, key in keys.items() if not key.endswith("/")}
    if not objects:
        return {}
    links: dict[str, Any] = {"expires_in": expires_in, **objects}
    previews_prefix = keys.get("previews")
    if previews_prefix:
        if "previews" in study:
            series = list(study["previews"]["series"])
            truncated = int(study["previews"]["count"]) > len(series)
        else:
            preview_keys, truncated = store.keys_under(previews_prefix, PREVIEW_LINKS_MAX)
            series = linked_previews(previews_prefix, preview_keys)
        links["previews"] = [
            {"series_instance_uid": uid,
             "url": store.presigned_get(f"{previews_prefix}{uid}.png", expires_in)}
            for uid in series
        ]
        links["previews_truncated"] = truncated
    return links
