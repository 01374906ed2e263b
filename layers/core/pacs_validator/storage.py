"""S3 keys and objects. This module is the only place an S3 key is formed.

Every key is built from a study id of our own format and a sanitised file name, so nothing
a client sends (``../../x``, URL-encoded or Unicode tricks, absolute paths) can make the
pipeline write outside ``incoming/<id>/``, ``studies/<id>/`` or ``rejected/<id>/``.

Besides ``incoming/``, the uploads bucket holds what the pipeline keeps while a study is in
flight, under prefixes the S3 trigger does not watch: ``manifests/<id>.json`` (the declared
files) and ``work/<id>/`` (per-instance descriptions, storage chunks, reports). Both expire
with the bucket's lifecycle rule.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from pacs_validator.names import (
    CHECKSUM_ALGORITHM,
    CHECKSUM_ALGORITHM_FIELD,
    CHECKSUM_FIELD,
    safe_name,
)

STUDY_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
INCOMING = "incoming"
STUDIES = "studies"
REJECTED = "rejected"
MANIFESTS = "manifests"
WORK = "work"
_DOWNLOAD_CHUNK = 8 * 1024 * 1024
_SINGLE_COPY_LIMIT = 5 * 1024**3
_MULTIPART_PART = 8 * 1024 * 1024


class UnsafeKeyError(ValueError):
    """A key or name that cannot be made safe."""


def new_study_id() -> str:
    return uuid.uuid4().hex


def study_id_for_drop(bucket: str, key: str, version: str) -> str:
    """The id of a plain drop: derived from the object, so a redelivered event maps to it."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{key}#{version}").hex


def is_study_id(text: str) -> bool:
    return bool(STUDY_ID_PATTERN.match(text))


@dataclass(frozen=True)
class IncomingKey:
    """What an ``incoming/`` key says: the study it belongs to (if any) and the file name."""

    study_id: str | None
    name: str


def parse_incoming_key(key: str) -> IncomingKey:
    """``incoming/<id>/<name>`` -> (id, name); a plain drop ``incoming/<name>`` has no id.

    A name holding ``/`` (``incoming/<id>/a/b.dcm``, which the study-wide form allows) is
    named by its last part, as :func:`safe_name` names it when it is declared."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == INCOMING and is_study_id(parts[1]):
        return IncomingKey(study_id=parts[1], name=safe_name(parts[-1]))
    return IncomingKey(study_id=None, name=safe_name(parts[-1]))


def _checked(study_id: str) -> str:
    if not is_study_id(study_id):
        raise UnsafeKeyError("not a study id")
    return study_id


def incoming_key(study_id: str, name: str) -> str:
    return f"{INCOMING}/{_checked(study_id)}/{safe_name(name)}"


def study_key(study_id: str, leaf: str) -> str:
    """``studies/<id>/<leaf>`` for a fixed leaf (``metadata.json``, ``validation.log``)."""
    return f"{STUDIES}/{_checked(study_id)}/{safe_name(leaf)}"


def stored_instance_key(study_id: str, sop_instance_uid: str | None, single: bool) -> str:
    """Where a valid instance is stored: ``original.dcm`` alone, or by SOPInstanceUID."""
    if single or not sop_instance_uid:
        return study_key(study_id, "original.dcm")
    return f"{STUDIES}/{_checked(study_id)}/instances/{safe_name(sop_instance_uid)}.dcm"


def preview_key(study_id: str, series_instance_uid: str) -> str:
    """``studies/<id>/previews/<SeriesInstanceUID>.png``."""
    return f"{STUDIES}/{_checked(study_id)}/previews/{safe_name(series_instance_uid)}.png"


def rejected_key(study_id: str, leaf: str) -> str:
    return f"{REJECTED}/{_checked(study_id)}/{safe_name(leaf)}"


def incoming_prefix(study_id: str) -> str:
    """The prefix every file of a declared study is uploaded under."""
    return f"{INCOMING}/{_checked(study_id)}/"


def manifest_key(study_id: str) -> str:
    return f"{MANIFESTS}/{_checked(study_id)}.json"


def work_key(study_id: str, *parts: str) -> str:
    """``work/<id>/<part>/.../<leaf>``: the pipeline's scratch objects for one study."""
    return "/".join((WORK, _checked(study_id), *(safe_name(p) for p in parts)))


def s3_client() -> Any:
    """An S3 client that signs presigned URLs with SigV4 (botocore may otherwise still make
    SigV2 ones, which newer regions refuse); path-style addressing when an endpoint is set
    (LocalStack), so the presigned URLs it makes work where DNS knows only localhost."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    addressing = {"addressing_style": "path"} if endpoint else {}
    config = Config(s3=addressing, signature_version="s3v4")
    return boto3.client("s3", endpoint_url=endpoint, config=config)


@dataclass(frozen=True)
class Downloaded:
    """An object in a temporary file, and the checksum S3 verified on upload."""

    path: Path
    checksum_sha256: str | None


class ObjectStore:
    """The few S3 operations the pipeline needs, on one bucket."""

    def __init__(self, bucket: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.client = client or s3_client()

    @contextmanager
    def downloaded(self, key: str) -> Iterator[Downloaded]:
        """The object streamed to a temporary file (never whole in memory), removed after,
        with the SHA-256 checksum S3 checked when it was uploaded (if the uploader sent one)."""
        with tempfile.NamedTemporaryFile(suffix=".dcm") as handle:
            response = self.client.get_object(Bucket=self.bucket, Key=key,
                                              ChecksumMode="ENABLED")
            for chunk in response["Body"].iter_chunks(_DOWNLOAD_CHUNK):
                handle.write(chunk)
            handle.flush()
            yield Downloaded(Path(handle.name), response.get("ChecksumSHA256"))

    def copy_from(
        self, source_bucket: str, source_key: str, target_key: str, size: int | None = None
    ) -> None:
        """Server-side copy into this bucket: the bytes never pass through the function.

        One CopyObject call when the size is known to be within its 5 GB limit, else the
        managed (multipart) copy, which first asks S3 for the size."""
        source = {"Bucket": source_bucket, "Key": source_key}
        if size is not None and size <= _SINGLE_COPY_LIMIT:
            self.client.copy_object(CopySource=source, Bucket=self.bucket, Key=target_key)
        else:
            self.client.copy(source, self.bucket, target_key)

    def put_json(self, key: str, document: Any, indent: int | None = 2) -> None:
        self.put_bytes(key, json.dumps(document, indent=indent, ensure_ascii=False).encode(),
                       "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def put_stream(self, key: str, pieces: Iterable[bytes], content_type: str) -> int:
        """Write ``pieces`` as one object without holding it whole: one PutObject when it
        fits in a part, else a multipart upload of 8 MB parts. Returns the size written."""
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        written = 0
        try:
            for piece in pieces:
                buffer += piece
                written += len(piece)
                if len(buffer) >= _MULTIPART_PART:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=content_type)["UploadId"]
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, buffer))
                    buffer = bytearray()
            if upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer),
                                       ContentType=content_type)
                return written
            if buffer:
                parts.append(self._upload_part(key, upload_id, len(parts) + 1, buffer))
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key,
                                                  UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=upload_id)
            raise
        return written

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytearray
                     ) -> dict[str, Any]:
        response = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                           PartNumber=number, Body=bytes(data))
        return {"PartNumber": number, "ETag": response["ETag"]}

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def presigned_get(self, key: str, expires_in: int) -> str:
        """A URL that downloads the object without credentials until it expires: how a
        browser (an ``<img>``, a link) reads what a signed-in caller may read."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in)
        return url

    def keys_under(self, prefix: str, limit: int) -> tuple[list[str], bool]:
        """The first ``limit`` keys under ``prefix`` in key order (one request), and whether
        there are more."""
        page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=limit)
        return [item["Key"] for item in page.get("Contents", [])], bool(page.get("IsTruncated"))

    def presigned_post(self, key: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        """A presigned POST whose policy caps the size at ``max_bytes``: a presigned PUT
        cannot cap it at all.

        A ``key`` ending in ``/${filename}`` makes one form for a whole prefix: the policy
        then says ``starts-with`` that prefix and the client sets ``key`` per file.

        The policy also requires a SHA-256 checksum: ``fields`` carry
        ``x-amz-checksum-algorithm: SHA256`` and the client adds, per file,
        ``x-amz-checksum-sha256`` = base64 of the file's SHA-256 digest; S3 refuses a file
        whose bytes do not match it, so what lands is what the client hashed."""
        post: dict[str, Any] = self.client.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={CHECKSUM_ALGORITHM_FIELD: CHECKSUM_ALGORITHM},
            Conditions=[
                ["content-length-range", 1, max_bytes],
                {CHECKSUM_ALGORITHM_FIELD: CHECKSUM_ALGORITHM},
                ["starts-with", f"${CHECKSUM_FIELD}", ""],
            ],
            ExpiresIn=expires_in,
        )
        return post
