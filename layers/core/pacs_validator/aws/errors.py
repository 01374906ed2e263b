"""The one place the AWS SDK's errors become the flow's: every adapter method runs inside
:func:`service_errors`, so a ``ClientError`` or ``BotoCoreError`` leaves the adapter as
:class:`~pacs_validator.flow.ports.DependencyUnavailable` (503), the SDK's error chained
to it for the logs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from pacs_validator.flow.ports import DependencyUnavailable as DependencyUnavailable


@contextmanager
def service_errors() -> Iterator[None]:
    """Raise the SDK's errors inside the block (or the decorated method) as
    :class:`DependencyUnavailable`, named by the SDK's exception type: never by its
    message, which can quote request values."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise DependencyUnavailable(type(error).__name__) from error


def is_conditional_failure(error: ClientError) -> bool:
    """A DynamoDB condition that did not hold: an expected answer, not a failure."""
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")
