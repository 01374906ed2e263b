"""LocalStack's DynamoDB API, forwarded to moto's DynamoDB in a process of its own
(``localstack_nodocker.dynamodb``), as LocalStack forwards to DynamoDB Local.

Requests that reach LocalStack (CloudFormation's, the tests', the CLI's) are forwarded as they
came, for the account LocalStack resolved. Lambda functions get the backend's address as
``AWS_ENDPOINT_URL_DYNAMODB`` (:func:`endpoint_for_functions`), so their DynamoDB calls cost
LocalStack nothing: both paths reach the same tables.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
from typing import Any

from localstack.aws.api import RequestContext
from localstack.aws.api.dynamodb import DynamodbApi
from localstack.aws.forwarder import AwsRequestProxy, ForwardingFallbackDispatcher
from localstack.aws.skeleton import DispatchTable
from localstack.services.plugins import ServiceLifecycleHook

from localstack_nodocker.dynamodb import ACCOUNT_HEADER

LOG = logging.getLogger(__name__)

STARTUP_SECONDS = 30
"""How long the backend may take to import moto and print its port."""


class DynamoDBBackend:
    """The backend process, started here and stopped with LocalStack's DynamoDB service."""

    running: DynamoDBBackend | None = None

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localstack_nodocker.dynamodb"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], STARTUP_SECONDS)
        port = self.process.stdout.readline().strip() if ready and self.process.stdout else ""
        if not port.isdigit():
            self.process.kill()
            raise RuntimeError("moto's DynamoDB did not start: see LocalStack's log")
        self.url = f"http://127.0.0.1:{port}"
        DynamoDBBackend.running = self
        LOG.info("DynamoDB served by moto at %s (pid %d)", self.url, self.process.pid)

    def stop(self) -> None:
        DynamoDBBackend.running = None
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


class ForwardingDynamoDBProvider(DynamodbApi, ServiceLifecycleHook):
    """No operation is overridden: :func:`forwarded` sends each to the backend.

    Covers what the backend covers: what a status table and Powertools idempotency need
    (CreateTable, DescribeTable, UpdateTimeToLive, PutItem/UpdateItem/DeleteItem with
    ConditionExpression, GetItem, Query, TransactWriteItems), and what CloudFormation's
    AWS::DynamoDB::Table handler calls.
    """

    def __init__(self, backend: DynamoDBBackend) -> None:
        self.backend = backend

    def on_before_stop(self) -> None:
        self.backend.stop()


def forwarded(provider: ForwardingDynamoDBProvider) -> DispatchTable:
    """Every operation forwarded as it came, for the account LocalStack resolved."""
    proxy = AwsRequestProxy(provider.backend.url)

    def forward(context: RequestContext, _: Any = None) -> Any:
        context.request.headers[ACCOUNT_HEADER] = context.account_id
        return proxy.forward(context)

    return ForwardingFallbackDispatcher(provider, forward)


def endpoint_for_functions() -> dict[str, str]:
    """``AWS_ENDPOINT_URL_DYNAMODB`` for a handler process, when DynamoDB is this backend
    (``PROVIDER_OVERRIDE_DYNAMODB=moto``); it is started first if no request has yet."""
    if os.environ.get("PROVIDER_OVERRIDE_DYNAMODB") != "moto":
        return {}
    if DynamoDBBackend.running is None:
        from localstack.services.plugins import SERVICE_PLUGINS

        SERVICE_PLUGINS.require("dynamodb")
    backend = DynamoDBBackend.running
    return {"AWS_ENDPOINT_URL_DYNAMODB": backend.url} if backend else {}
