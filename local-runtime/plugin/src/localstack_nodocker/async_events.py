"""Asynchronous invocations survive a function update.

LocalStack queues each asynchronous invocation (S3, EventBridge, ``InvocationType=Event``) in
an internal SQS queue per function version; a poller per version receives them with a 2 s
long poll, hiding each for the function's timeout plus 60 s, and hands them to a thread pool.
When a function's configuration or code changes, the new version gets a new poller on the same
queue and the old one is stopped. localstack-core 2026.3.0 then loses what the old poller holds
at that moment until it becomes visible again, minutes later:

- a receive that returns while stopping is not handed on (the guard after ``receive_message``);
- invocations waiting for a thread are cancelled (``shutdown(cancel_futures=True)``).

Each held invocation is sent with ``lambda.Invoke`` to the ARN it was invoked on, which reaches
whichever version is current, so the old poller may as well finish them: :func:`patch_poller`
makes it give back what a stopping receive returned (visible again at once, for the new
poller) and lets waiting invocations run. On AWS an update loses no event.
"""

from __future__ import annotations

import logging
from typing import Any

from localstack.services.lambda_.invocation import event_manager
from localstack.services.lambda_.invocation.event_manager import Poller

LOG = logging.getLogger(__name__)


def _run(self: Poller, *args: Any, **kwargs: Any) -> None:
    """LocalStack's polling loop, except that messages received while stopping are given back."""
    sqs_client = event_manager.get_sqs_client(
        self.version_manager.function_version, client_config=event_manager.CLIENT_CONFIG
    )
    function_timeout = self.version_manager.function_version.config.timeout
    while not self._shutdown_event.is_set():
        try:
            response = sqs_client.receive_message(
                QueueUrl=self.event_queue_url,
                WaitTimeSeconds=2,
                MaxNumberOfMessages=10,
                VisibilityTimeout=function_timeout + 60,
            )
            messages = response.get("Messages") or []
            if self._shutdown_event.is_set():
                queue = sqs_client.queue_manager.get_queue(queue_name=self.event_queue_url)
                for message in messages:
                    queue.update_visibility_timeout(message["ReceiptHandle"], 0)
                return
            for message in messages:
                self.invoker_pool.submit(self.handle_message, message)
        except Exception:
            if self._shutdown_event.is_set():
                return
            LOG.exception(
                "Error while polling lambda events for function %s",
                self.version_manager.function_version.qualified_arn,
            )
            self._shutdown_event.wait(1)


def _stop(self: Poller) -> None:
    """Stop receiving; invocations already received still run (to the current version)."""
    self._shutdown_event.set()
    self.invoker_pool.shutdown(cancel_futures=False, wait=False)


def patch_poller() -> None:
    Poller.run = _run  # type: ignore[method-assign]
    Poller.stop = _stop  # type: ignore[method-assign]
