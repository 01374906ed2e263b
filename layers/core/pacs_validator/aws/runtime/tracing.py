"""The handlers' tracer: Powertools' Tracer on X-Ray when tracing is on, and one that records
nothing, without the X-Ray SDK, when it is off.

Powertools' Tracer imports ``aws_xray_sdk.core`` when it is made, tracing on or off, unless
it is given a provider: about 0.2 s of every cold start with nothing to show for it when
tracing is off (``POWERTOOLS_TRACE_DISABLED``, or outside Lambda: tests, the local runtime's
``sam local``-like runs). Off, the Tracer gets :class:`Untraced`, so the handlers keep their
``capture_*`` decorators either way.

On, traces must hold no patient data: they are kept 30 days, outside the stack's KMS key.
Powertools would patch every module the X-Ray SDK knows, and the SDK records, for each AWS
call, the request and response parameters its allow-list names: S3 object keys and copy
sources (file names, which often hold patient names), DynamoDB items and keys. So only
botocore is patched (no ``httplib`` subsegment carries a URL with a key in its path), and
the SDK's allow-list is cut down to :data:`RECORDED_PARAMETERS`, names of our own resources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class _Nothing(BaseSegment):
    """A segment that records nothing."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class Untraced(BaseProvider):
    """The tracing provider of a function whose tracing is off: every subsegment is
    :class:`_Nothing`, and nothing is patched."""

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _Nothing()

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None,
                                  **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _Nothing()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


TRACED_MODULES = ("botocore",)
"""What the X-Ray SDK patches: the AWS calls, and no HTTP library of its own."""

RECORDED_PARAMETERS = frozenset({
    "Bucket", "TableName", "IndexName", "QueueUrl", "FunctionName", "InvocationType",
    "Qualifier", "StatusCode", "FunctionError",
})
"""The only AWS call parameters a trace records: which bucket, table, queue or function a
call went to, and how it ended; never an object key, prefix, item, key or message."""


def _record_only_resource_names() -> None:
    """Cut the X-Ray SDK's parameter allow-list (``boto_utils.whitelist``, which its botocore
    patch reads on every call) down to :data:`RECORDED_PARAMETERS`."""
    from aws_xray_sdk.ext import boto_utils

    for service in boto_utils.whitelist["services"].values():
        for operation in service["operations"].values():
            for kind in ("request_parameters", "response_parameters"):
                if kind in operation:
                    operation[kind] = [p for p in operation[kind] if p in RECORDED_PARAMETERS]
            for kind in ("request_descriptors", "response_descriptors"):
                if kind in operation:
                    operation[kind] = {name: how for name, how in operation[kind].items()
                                       if name in RECORDED_PARAMETERS}


def function_tracer() -> Tracer:
    """The function's Tracer: on X-Ray when Powertools would trace (in Lambda, tracing not
    disabled), recording no patient data (see the module's docstring); else on
    :class:`Untraced`."""
    if Tracer._is_tracer_disabled():  # the rule Tracer itself applies
        return Tracer(provider=Untraced())
    _record_only_resource_names()
    return Tracer(patch_modules=TRACED_MODULES)
