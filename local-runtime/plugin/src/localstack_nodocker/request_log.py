"""LocalStack's request log, without the work only its trace mode reads.

For every request LocalStack logs one line (``AWS dynamodb.PutItem => 200``), and hands the
logger the request's and response's headers as dictionaries, the parsed input and output,
and, for a request that is no AWS operation (an API Gateway call), the request body read
again and the whole response body. Only the trace formatter, installed when ``LS_LOG`` asks
for debug output, prints those; otherwise they are built and dropped, about 1 ms of
LocalStack's CPU per request (``benchmarks/README.md``). Here they are built only when that
formatter can print them; the lines the log shows are the same.
"""

from __future__ import annotations

import logging
from typing import Any

from localstack.aws.api import RequestContext
from localstack.aws.handlers.logging import ResponseLogger
from localstack.http import Response


def _lean_log(self: ResponseLogger, context: RequestContext, response: Response) -> None:
    if context.operation:
        logger = self.internal_aws_logger if context.is_internal_call else self.aws_logger
    else:
        logger = self.internal_http_logger if context.is_internal_call else self.http_logger
    if logger.isEnabledFor(logging.DEBUG):
        _traced_log(self, context, response)
        return
    if not logger.isEnabledFor(logging.INFO):
        return
    arguments: tuple[Any, ...]
    if not context.operation:
        arguments = ("%s %s => %d", context.request.method, context.request.path,
                     response.status_code)
    elif context.service_exception:
        arguments = ("AWS %s.%s => %d (%s)", context.service.service_name,
                     context.operation.name, response.status_code,
                     context.service_exception.code)
    else:
        arguments = ("AWS %s.%s => %s", context.service.service_name, context.operation.name,
                     response.status_code)
    logger.info(*arguments)


_traced_log = ResponseLogger._log


def patch_request_log() -> None:
    """Log each request's line without the trace-only details (see the module's docstring)."""
    ResponseLogger._log = _lean_log  # type: ignore[method-assign]
