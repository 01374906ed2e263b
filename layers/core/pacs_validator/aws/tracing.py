"""The handlers' tracer: Powertools' Tracer on X-Ray when tracing is on, and one that records
nothing, without the X-Ray SDK, when it is off.

Powertools' Tracer imports ``aws_xray_sdk.core`` when it is made, tracing on or off, unless
it is given a provider: about 0.2 s of every cold start with nothing to show for it when
tracing is off (``POWERTOOLS_TRACE_DISABLED``, or outside Lambda: tests, the local runtime's
``sam local``-like runs). Off, the Tracer gets :class:`Untraced`, so the handlers keep their
``capture_*`` decorators either way.
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


def function_tracer() -> Tracer:
    """The function's Tracer: on X-Ray when Powertools would trace (in Lambda, tracing not
    disabled), else on :class:`Untraced`."""
    if Tracer._is_tracer_disabled():  # the rule Tracer itself applies
        return Tracer(provider=Untraced())
    return Tracer()
