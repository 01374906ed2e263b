"""Entry-point objects. Kept import-light: LocalStack resolves these while it starts."""

from __future__ import annotations

import logging
from pathlib import Path

from localstack.runtime import hooks
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.plugins import Service, aws_provider

LOG = logging.getLogger(__name__)


class LocalRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    """Selected with LAMBDA_RUNTIME_EXECUTOR=local."""

    name = "local"

    def load(self, *args: object, **kwargs: object) -> type:
        from localstack_nodocker.executor import LocalRuntimeExecutor

        return LocalRuntimeExecutor


@aws_provider(api="dynamodb", name="moto")
def dynamodb_moto() -> Service:
    """DynamoDB served by moto (no DynamoDB Local / Java).

    Selected with PROVIDER_OVERRIDE_DYNAMODB=moto.
    """
    from localstack_nodocker.dynamodb import (
        MotoDynamoDBProvider,
        one_at_a_time,
        patch_queries,
        patch_transactions,
    )

    patch_transactions()
    patch_queries()
    return Service.for_provider(MotoDynamoDBProvider(), dispatch_table_factory=one_at_a_time)


@hooks.on_infra_start()
def relocate_s3_tmp_dir() -> None:
    """The S3 provider hard-codes /tmp/localstack-s3-storage; keep it under our own temp folder."""
    import tempfile

    from localstack.services.s3 import provider as s3_provider

    target = str(Path(tempfile.gettempdir()) / "localstack-s3-storage")
    s3_provider.DEFAULT_S3_TMP_DIR = target
    LOG.debug("S3 temporary storage relocated to %s", target)


@hooks.on_infra_start()
def api_updates() -> None:
    """CloudFormation can update a REST API and its stage (localstack_nodocker.apigateway)."""
    from localstack_nodocker.apigateway import patch_api_updates

    patch_api_updates()


@hooks.on_infra_start()
def alias_updates() -> None:
    """CloudFormation can point a Lambda alias at a new version
    (localstack_nodocker.lambda_alias)."""
    from localstack_nodocker.lambda_alias import patch_alias_updates

    patch_alias_updates()


@hooks.on_infra_start()
def keep_connections_alive() -> None:
    """HTTP keep-alive for every client (it runs before the gateway is built).

    With GATEWAY_SERVER=hypercorn, LocalStack answers every request with ``Connection: close``
    unless the client asked for keep-alive in so many words (boto3 does not): a workaround for
    a 2022 hypercorn/h11 slowness (localstack#6557) that asyncio's TCP_NODELAY has since made
    moot here (a boto3 call on a kept connection: 5-6 ms, on a new one: 6-10 ms). So each AWS
    call of a handler, and each of LocalStack's own internal calls, opened a new connection, and
    the gateway's single event-loop thread accepted it, started a thread to peek for TLS
    (localstack.http.duplex_socket) and closed it again: under load about a quarter of that
    thread's time went to starting those threads, and every request waited for it.
    """
    from localstack.aws import handlers
    from localstack.aws.api import RequestContext
    from localstack.aws.chain import HandlerChain
    from localstack.http import Response

    def leave_connection_open(
        _chain: HandlerChain, context: RequestContext, response: Response
    ) -> None:
        """The client's choice (HTTP/1.1: persistent unless it says close)."""

    handlers.set_close_connection_header = leave_connection_open


@hooks.on_infra_start()
def keep_events_across_updates() -> None:
    """An asynchronous invocation pending while a function is updated is not lost
    (localstack_nodocker.async_events)."""
    from localstack_nodocker.async_events import patch_poller

    patch_poller()
