"""Lambda's invocation metrics and function logs, shipped in batches.

After each invocation LocalStack starts a thread that sends one ``Invocations`` (and, on an
error, one ``Errors``) datum to CloudWatch, and hands the invocation's log lines to a thread
that sends them to CloudWatch Logs: two ``PutMetricData``/``PutLogEvents`` calls per
invocation through its internal AWS client, whose signing and serialising cost more than the
invocation itself. A trivial synchronous invoke cost LocalStack 17 ms of CPU, and LocalStack's
one process bounds the local pipeline.

Here an invocation adds to a count instead, sent every :data:`FLUSH_SECONDS` as one datum per
function and metric (``Values=[1]``, ``Counts=[n]``: the same sum and sample count), and the
log loop puts what has queued in that time into the logs store (moto's, which LocalStack's
``PutLogEvents`` fills in the end) once per log stream, without the internal client; where a
metric filter exists, which LocalStack's provider emulates, it sends through the client as
before. Metrics and logs reach CloudWatch up to a second later; on AWS they take longer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from queue import Empty
from typing import Any

from localstack.aws.api.logs import InputLogEvent
from localstack.aws.connect import connect_to
from localstack.services.lambda_.invocation import version_manager
from localstack.services.lambda_.invocation.logs import QUEUE_SHUTDOWN, LogHandler, LogItem
from localstack.utils.aws.client_types import ServicePrincipal
from localstack.utils.bootstrap import is_api_enabled
from localstack.utils.threads import start_thread

LOG = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
"""How long metrics and log lines wait to be sent with the others of their time."""

MAX_EVENTS_PER_CALL = 10_000
"""PutLogEvents' limit on the events of one call."""

MAX_BYTES_PER_CALL = 1_000_000
"""PutLogEvents' limit on the bytes of one call: each event's message plus
EVENT_OVERHEAD_BYTES."""

EVENT_OVERHEAD_BYTES = 26

MetricKey = tuple[str, str, str, str]
"""(account, region, function name, metric name)."""


class InvocationMetrics:
    """Counts of ``Invocations`` and ``Errors`` per function, sent every FLUSH_SECONDS."""

    def __init__(self) -> None:
        self._counts: Counter[MetricKey] = Counter()
        self._lock = threading.Lock()
        self._sender: threading.Thread | None = None

    def record(self, function_name: str, account_id: str, region_name: str,
               metrics: tuple[str, ...]) -> None:
        """Count one invocation (``metrics``: Invocations, and Errors when it failed)."""
        with self._lock:
            for metric in metrics:
                self._counts[(account_id, region_name, function_name, metric)] += 1
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_forever,
                                                name="lambda-invocation-metrics", daemon=True)
                self._sender.start()

    def _send_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.send()

    def send(self) -> None:
        """Send the counts gathered so far, one PutMetricData per account and region."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not counts or not is_api_enabled("cloudwatch"):
            return
        timestamp = datetime.now(timezone.utc)
        by_place: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for (account_id, region_name, function_name, metric), count in counts.items():
            by_place.setdefault((account_id, region_name), []).append({
                "MetricName": metric, "Timestamp": timestamp,
                "Dimensions": [{"Name": "FunctionName", "Value": function_name}],
                "Values": [1.0], "Counts": [float(count)]})
        for (account_id, region_name), data in by_place.items():
            try:
                connect_to(aws_access_key_id=account_id, region_name=region_name) \
                    .cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data)
            except Exception:  # as LocalStack's own: a lost metric stops nothing
                LOG.exception("Unable to put Lambda invocation metrics to CloudWatch")


def log_events(item: LogItem, timestamp: int) -> list[InputLogEvent]:
    """An invocation's log lines as CloudWatch events, as LocalStack makes them: one per
    non-empty line, its newline kept, all with the time they were sent."""
    return [{"timestamp": timestamp, "message": line + "\n"}
            for line in item.logs.split("\n") if line]


def in_calls(events: list[InputLogEvent]) -> list[list[InputLogEvent]]:
    """``events`` split into runs that PutLogEvents accepts in one call."""
    calls: list[list[InputLogEvent]] = [[]]
    size = 0
    for event in events:
        event_size = len(event["message"].encode()) + EVENT_OVERHEAD_BYTES
        if calls[-1] and (len(calls[-1]) == MAX_EVENTS_PER_CALL
                          or size + event_size > MAX_BYTES_PER_CALL):
            calls.append([])
            size = 0
        calls[-1].append(event)
        size += event_size
    return calls


def _stored(account_id: str, region: str, group: str, stream: str,
            events: list[InputLogEvent]) -> bool:
    """Put the events straight into the logs store LocalStack keeps in moto (what its
    ``PutLogEvents`` does in the end), making the group and stream on first use. False, and
    nothing stored, when the account and region have a metric filter: LocalStack's provider
    emulates those, so the events take its own path."""
    from moto.logs.exceptions import ResourceAlreadyExistsException
    from moto.logs.models import logs_backends

    backend = logs_backends[account_id][region]
    if backend.filters.metric_filters:
        return False
    if group not in backend.groups:
        with contextlib.suppress(ResourceAlreadyExistsException):
            backend.create_log_group(group, tags={})
    if stream not in backend.groups[group].streams:
        with contextlib.suppress(ResourceAlreadyExistsException):
            backend.create_log_stream(group, stream)
    for call in in_calls(events):
        backend.put_log_events(group, stream, call)
    return True


def _sent(logs_client: Any, group: str, stream: str, events: list[InputLogEvent]) -> None:
    """LocalStack's own sending, through its internal client."""
    for call in in_calls(events):
        try:
            logs_client.put_log_events(logGroupName=group, logStreamName=stream,
                                       logEvents=call)
        except logs_client.exceptions.ResourceNotFoundException:
            with contextlib.suppress(logs_client.exceptions.ResourceAlreadyExistsException):
                logs_client.create_log_group(logGroupName=group)
            logs_client.create_log_stream(logGroupName=group, logStreamName=stream)
            logs_client.put_log_events(logGroupName=group, logStreamName=stream,
                                       logEvents=call)


def _run_log_loop(self: LogHandler, *args: Any, **kwargs: Any) -> None:
    """LocalStack's log loop, storing what queued in FLUSH_SECONDS together per stream."""
    logs_client = connect_to.with_assumed_role(
        region_name=self.region, role_arn=self.role_arn,
        service_principal=ServicePrincipal.lambda_).logs
    account_id = self.role_arn.split(":")[4]
    while not self._shutdown_event.is_set():
        items = [self.log_queue.get()]
        time.sleep(FLUSH_SECONDS)
        while True:
            try:
                items.append(self.log_queue.get_nowait())
            except Empty:
                break
        timestamp = int(time.time() * 1000)
        by_stream: dict[tuple[str, str], list[InputLogEvent]] = {}
        for item in items:
            if not isinstance(item, LogItem):  # QUEUE_SHUTDOWN
                continue
            by_stream.setdefault((item.log_group, item.log_stream), []).extend(
                log_events(item, timestamp))
        for (group, stream), events in by_stream.items():
            if not events:
                continue
            try:
                if not _stored(account_id, self.region, group, stream, events):
                    _sent(logs_client, group, stream, events)
            except Exception:  # as LocalStack's own: the loop goes on
                LOG.exception("Error saving logs to group %s in region %s", group, self.region)
        if QUEUE_SHUTDOWN in items:
            return


_metrics = InvocationMetrics()


def _invocation_counted(function_name: str, account_id: str, region_name: str) -> None:
    _metrics.record(function_name, account_id, region_name, ("Invocations",))


def _error_counted(function_name: str, account_id: str, region_name: str) -> None:
    _metrics.record(function_name, account_id, region_name, ("Invocations", "Errors"))


def _start_thread(method: Any, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
    """LocalStack's ``start_thread``, except that counting an invocation's metrics, a
    dictionary update now, runs where it is asked for."""
    if name is not None and name.startswith("record-cloudwatch-metric"):
        method()
        return None
    return start_thread(method, *args, name=name, **kwargs)


def patch_lambda_telemetry() -> None:
    """Count invocation metrics and batch function logs (see the module's docstring)."""
    version_manager.record_cw_metric_invocation = _invocation_counted
    version_manager.record_cw_metric_error = _error_counted
    version_manager.start_thread = _start_thread
    LogHandler.run_log_loop = _run_log_loop  # type: ignore[method-assign]
