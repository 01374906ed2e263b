"""Once per event: Powertools' idempotency utility, its records kept in DynamoDB through the
function's own client.

Powertools' ``DynamoDBPersistenceLayer`` makes a boto3 session and client of its own when it
is created: at import, as the utility is usually used, and a second load of DynamoDB's
model, about as long as the first. Here it is made on the first call and shares the
function's DynamoDB client, so an invocation that needs no idempotency (the deadline sweep,
a chunk of copies) never pays for it, and one that does pays once. It is then kept with that
client: the functions using it have no SnapStart, whose restore forgets the clients.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from pacs_validator.aws.clients import Clients

Handled = Callable[..., dict[str, Any]]


class OncePerEvent:
    """``function``, called with its event as the keyword argument ``data_keyword_argument``,
    runs at most once per value of ``event_key_jmespath`` in that event (within 24 hours):
    a repeated event gets the first call's answer. The handler registers its Lambda context
    with :attr:`config` on each invocation (the record's in-progress expiry)."""

    def __init__(self, function: Handled, *, data_keyword_argument: str,
                 event_key_jmespath: str, table_name: str, clients: Clients) -> None:
        self.function = function
        self.data_keyword_argument = data_keyword_argument
        self.table_name = table_name
        self.clients = clients
        self.config = IdempotencyConfig(event_key_jmespath=event_key_jmespath,
                                        expires_after_seconds=24 * 3600)

    @cached_property
    def _idempotent(self) -> Handled:
        persistence = DynamoDBPersistenceLayer(
            table_name=self.table_name, boto3_client=self.clients.dynamodb())
        wrapped: Handled = idempotent_function(
            self.function, data_keyword_argument=self.data_keyword_argument,
            config=self.config, persistence_store=persistence)
        return wrapped

    def __call__(self, **event: Any) -> dict[str, Any]:
        return self._idempotent(**event)
