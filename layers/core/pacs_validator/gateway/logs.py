"""The gateway's log lines, for an operator reading a server's journal: the time, level and
message, then the fields the line carries (``calling_ae=CT1 status=0xA900 rules=...``), so
that every line can be grepped by sender, status, rule or study id. The fields are those
the gateway's code passes as ``extra``, which never hold a patient value."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
"""What every log record has: anything else on a record came as ``extra``."""


class FieldsFormatter(logging.Formatter):
    """The standard line, followed by the record's ``extra`` fields as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: value for key, value in vars(record).items()
                  if key not in RECORD_ATTRIBUTES}
        return super().format(record) + "".join(f" {key}={value}"
                                                for key, value in fields.items())


def configure_logging() -> None:
    """Log at INFO to standard error, fields shown (a systemd unit's journal)."""
    handler = logging.StreamHandler()
    handler.setFormatter(FieldsFormatter(FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
