"""DynamoDB on moto: every operation falls through to moto's DynamoDB backend."""

from __future__ import annotations

import threading
from typing import Any

from localstack.aws.api.dynamodb import DynamodbApi
from localstack.aws.skeleton import DispatchTable
from localstack.services.moto import MotoFallbackDispatcher
from localstack.services.plugins import ServiceLifecycleHook


class MotoDynamoDBProvider(DynamodbApi, ServiceLifecycleHook):
    """No operation is overridden: MotoFallbackDispatcher sends each NotImplementedError to moto.

    Covers what a status table and Powertools idempotency need (CreateTable, DescribeTable,
    UpdateTimeToLive, PutItem/UpdateItem/DeleteItem with ConditionExpression, GetItem, Query),
    and what CloudFormation's AWS::DynamoDB::Table handler calls.
    """


def one_at_a_time(provider: object) -> DispatchTable:
    """moto's dispatch table, one operation at a time.

    LocalStack serves requests on many threads, and moto's DynamoDB reads, changes and
    writes an item with no lock: two concurrent ``ADD received :one`` could count once.
    DynamoDB makes every item write atomic; serving one operation at a time keeps that.
    """
    lock = threading.Lock()
    table = MotoFallbackDispatcher(provider)

    def serialized(handler: Any) -> Any:
        def handle(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return handler(*args, **kwargs)
        return handle

    return {operation: serialized(handler) for operation, handler in table.items()}
