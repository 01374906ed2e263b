"""The AWS clients of one function: each made on its first use, then shared by the function's
adapters (one S3 client for both buckets).

Making a client loads its service's model and endpoint rules: tens of milliseconds, more
for the first one of a process. Nothing is made when a handler is imported, so an
invocation pays only for the services it calls, once per execution environment. A function
restored from a SnapStart snapshot forgets them (:meth:`Clients.forget`): the next use makes
each again from the models already loaded (a few milliseconds), with fresh credentials and
no connection from before the snapshot.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config

Made = TypeVar("Made")


def s3_client() -> Any:
    """An S3 client that signs presigned URLs with SigV4 (botocore may otherwise still make
    SigV2 ones, which newer regions refuse); path-style addressing when an endpoint is set
    (LocalStack), so the presigned URLs it makes work where DNS knows only localhost."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    addressing = {"addressing_style": "path"} if endpoint else {}
    config = Config(s3=addressing, signature_version="s3v4")
    return boto3.client("s3", endpoint_url=endpoint, config=config)


class Clients:
    """The clients of one function, made once each, on first use (from any thread: the
    copies of a chunk run on several)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, Any] = {}

    def _get(self, name: str, make: Callable[[], Made]) -> Made:
        with self._lock:
            if name not in self._made:
                self._made[name] = make()
            made: Made = self._made[name]
            return made

    def s3(self) -> Any:
        return self._get("s3", s3_client)

    def dynamodb(self) -> Any:
        """The low-level DynamoDB client (attribute values in DynamoDB's JSON)."""
        return self._get("dynamodb", lambda: boto3.client("dynamodb"))

    def table(self, name: str) -> Any:
        """The boto3 Table resource of table ``name`` (plain Python values). The resource's
        own client converts every value it is given: it is not :meth:`dynamodb`. Making a
        Table takes over a millisecond: it is kept, as the clients are."""
        resource = self._get("dynamodb-resource", lambda: boto3.resource("dynamodb"))
        return self._get(f"table:{name}", lambda: resource.Table(name))

    def events(self) -> Any:
        return self._get("events", lambda: boto3.client("events"))

    def lambda_(self) -> Any:
        return self._get("lambda", lambda: boto3.client("lambda"))

    def forget(self) -> None:
        """Drop every client: the next use of each makes it again."""
        with self._lock:
            self._made.clear()
