"""S3 adapter: the objects of one bucket, streamed, copied server-side and presigned.

Keys are formed by :mod:`pacs_validator.contract.keys` and only there.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pacs_validator.aws.clients import Clients
from pacs_validator.aws.errors import service_errors
from pacs_validator.contract.names import (
    CHECKSUM_ALGORITHM,
    CHECKSUM_ALGORITHM_FIELD,
    CHECKSUM_FIELD,
)
from pacs_validator.flow.ports import CopyMismatch, Downloaded, SourceObject

_DOWNLOAD_CHUNK = 8 * 1024 * 1024
_SINGLE_COPY_LIMIT = 5 * 1024**3
_MULTIPART_PART = 8 * 1024 * 1024


class S3Bucket:
    """The few S3 operations the pipeline and the API need, on one bucket (the flow's
    :class:`~pacs_validator.flow.ports.ObjectStore`)."""

    def __init__(self, bucket: str, clients: Clients | None = None) -> None:
        self.bucket = bucket
        self.clients = clients or Clients()

    @property
    def client(self) -> Any:
        return self.clients.s3()

    @contextmanager
    def downloaded(self, key: str, version_id: str | None = None,
                   first_bytes: int | None = None) -> Iterator[Downloaded]:
        """The object (``version_id`` of it, when given; its ``first_bytes`` alone, when
        given) streamed to a temporary file (never whole in memory), removed after; with the
        version and ETag read and, for a whole object, the SHA-256 checksum S3 checked when
        it was uploaded (if the uploader sent one)."""
        options: dict[str, str] = {"VersionId": version_id} if version_id else {}
        if first_bytes is None:
            options["ChecksumMode"] = "ENABLED"
        else:
            options["Range"] = f"bytes=0-{first_bytes - 1}"
        with tempfile.NamedTemporaryFile(suffix=".dcm") as handle:
            with service_errors():
                response = self.client.get_object(Bucket=self.bucket, Key=key, **options)
                for chunk in response["Body"].iter_chunks(_DOWNLOAD_CHUNK):
                    handle.write(chunk)
            handle.flush()
            yield Downloaded(Path(handle.name), response.get("ChecksumSHA256"),
                             version_id=response.get("VersionId"), etag=response.get("ETag"))

    @service_errors()
    def copy_from(self, source_bucket: str, source: SourceObject, target_key: str) -> None:
        """Server-side copy into this bucket (the bytes never pass through the function) of
        the version ``source`` pins, refused by S3 if its ETag differs, then checked when
        ``source`` has a SHA-256: the SHA-256 S3 computed for the copy, or else (no checksum
        in the answer) its size, must be what was read.

        One CopyObject call when the size is known to be within its 5 GB limit, else the
        managed (multipart) copy, whose checksum is of parts: only its size is checked."""
        copy_source = {"Bucket": source_bucket, "Key": source.key}
        if source.version_id:
            copy_source["VersionId"] = source.version_id
        pinned = {"CopySourceIfMatch": source.etag} if source.etag else {}
        if source.size is not None and source.size <= _SINGLE_COPY_LIMIT:
            result = self.client.copy_object(CopySource=copy_source, Bucket=self.bucket,
                                             Key=target_key, ChecksumAlgorithm="SHA256",
                                             **pinned)["CopyObjectResult"]
            checksum = result.get("ChecksumSHA256")
            if source.sha256 and checksum:
                if checksum != base64.b64encode(bytes.fromhex(source.sha256)).decode():
                    raise CopyMismatch("the copy's SHA-256 is not that of the bytes validated")
                return
        else:
            self.client.copy(copy_source, self.bucket, target_key, ExtraArgs=pinned)
        if source.sha256 and source.size is not None:
            copied = self.client.head_object(Bucket=self.bucket, Key=target_key)
            if int(copied["ContentLength"]) != source.size:
                raise CopyMismatch("the copy's size is not that of the bytes validated")

    def put_json(self, key: str, document: Any, indent: int | None = 2) -> None:
        self.put_bytes(key, json.dumps(document, indent=indent, ensure_ascii=False).encode(),
                       "application/json")

    @service_errors()
    def get_json(self, key: str) -> Any:
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def find_json(self, key: str) -> Any | None:
        """The JSON document at ``key``, or None when there is no such object."""
        with service_errors():
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as error:
                if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    return None
                raise
        return json.loads(body)

    @service_errors()
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

    @service_errors()
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    @service_errors()
    def presigned_get(self, key: str, expires_in: int) -> str:
        """A URL that downloads the object without credentials until it expires: how a
        browser (an ``<img>``, a link) reads what a signed-in caller may read."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in)
        return url

    @service_errors()
    def keys_under(self, prefix: str, limit: int) -> tuple[list[str], bool]:
        """The first ``limit`` keys under ``prefix`` in key order (one request), and whether
        there are more."""
        page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=limit)
        return [item["Key"] for item in page.get("Contents", [])], bool(page.get("IsTruncated"))

    @service_errors()
    def presigned_post(self, key: str, max_bytes: int, expires_in: int, min_bytes: int = 1
                       ) -> dict[str, Any]:
        """A presigned POST whose policy bounds the size (``min_bytes`` to ``max_bytes``): a
        presigned PUT cannot bound it at all.

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
                ["content-length-range", min_bytes, max_bytes],
                {CHECKSUM_ALGORITHM_FIELD: CHECKSUM_ALGORITHM},
                ["starts-with", f"${CHECKSUM_FIELD}", ""],
            ],
            ExpiresIn=expires_in,
        )
        return post
