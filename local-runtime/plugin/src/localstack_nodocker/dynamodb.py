"""DynamoDB on moto: every operation falls through to moto's DynamoDB backend."""

from __future__ import annotations

from localstack.aws.api.dynamodb import DynamodbApi
from localstack.services.plugins import ServiceLifecycleHook


class MotoDynamoDBProvider(DynamodbApi, ServiceLifecycleHook):
    """No operation is overridden: MotoFallbackDispatcher sends each NotImplementedError to moto.

    Covers what a status table and Powertools idempotency need (CreateTable, DescribeTable,
    UpdateTimeToLive, PutItem/UpdateItem/DeleteItem with ConditionExpression, GetItem, Query),
    and what CloudFormation's AWS::DynamoDB::Table handler calls.
    """
