"""Entry-point objects. Kept import-light: LocalStack resolves these while it starts."""

from __future__ import annotations

import logging
from pathlib import Path

from localstack.runtime import hooks
from localstack.runtime.server.core import RuntimeServer, RuntimeServerPlugin
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
    """DynamoDB served by moto in a process of its own (no DynamoDB Local / Java).

    Selected with PROVIDER_OVERRIDE_DYNAMODB=moto.
    """
    from localstack_nodocker.dynamodb_forwarding import (
        DynamoDBBackend,
        ForwardingDynamoDBProvider,
        forwarded,
    )

    provider = ForwardingDynamoDBProvider(DynamoDBBackend())
    return Service.for_provider(provider, dispatch_table_factory=forwarded)


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
def keep_events_across_updates() -> None:
    """An asynchronous invocation pending while a function is updated is not lost
    (localstack_nodocker.async_events)."""
    from localstack_nodocker.async_events import patch_poller

    patch_poller()


@hooks.on_infra_start()
def lambda_telemetry() -> None:
    """Lambda's invocation metrics and function logs are sent in batches
    (localstack_nodocker.lambda_telemetry)."""
    from localstack_nodocker.lambda_telemetry import patch_lambda_telemetry

    patch_lambda_telemetry()


class LoopbackTwistedServerPlugin(RuntimeServerPlugin):
    """Selected with GATEWAY_SERVER=twisted-loopback (localstack_nodocker.server)."""

    name = "twisted-loopback"

    def load(self, *args: object, **kwargs: object) -> RuntimeServer:
        from localstack_nodocker.server import LoopbackTwistedServer

        return LoopbackTwistedServer()
