"""Logs: one JSON object per line for `serve` and `work` (what a log pipeline parses),
readable text elsewhere (the console, one-off commands), or as `AMLBOT_LOG_FORMAT` says.

A correlation id follows one inbox item through everything it causes in this process: the
worker sets it from the item's delivery key before the handler runs (`correlated`, from
`approvals/correlation.py`), and every record logged meanwhile, on that thread, carries
it, as do the audit events and outbox messages written meanwhile. A delivery key is
Slack's event or trigger id, so the id also finds the request in Slack's own logs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from approvals.correlation import correlated, correlation_id

__all__ = [
    "LogFormat",
    "RetriedFailures",
    "configure",
    "correlated",
    "correlation_id",
    "current_format",
]

LogFormat = Literal["json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CorrelationFilter(logging.Filter):
    """Puts the current correlation id on each record (as `correlation_id`, or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = correlation_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "correlation_id"?, "exception"?}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation = getattr(record, "correlation_id", None) or correlation_id.get()
        if correlation:
            entry["correlation_id"] = correlation
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class RetriedFailures(logging.Filter):
    """For a library logger: a failure the library retries by itself, logged at ERROR with
    its whole traceback (slack_sdk's Socket Mode client, on every reconnect that fails
    while Slack is unreachable), becomes one WARNING line. Its message names the error
    already; a blip should not fill the log with tracebacks that page someone."""

    def __init__(self, *message_starts: str) -> None:
        super().__init__()
        self._starts = message_starts

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(self._starts):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def formatter(kind: LogFormat) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


_format: LogFormat = "text"


def current_format() -> LogFormat:
    """What `configure` chose (uvicorn's own loggers follow it)."""
    return _format


def configure(level: str, kind: LogFormat) -> None:
    """The root logger: to stderr, in `kind`, with correlation ids. As `basicConfig`, it
    leaves a root logger that has handlers already alone (a host that embeds `main`, tests)."""
    global _format
    root = logging.getLogger()
    if root.handlers:
        return
    _format = kind
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    handler.addFilter(CorrelationFilter())
    root.addHandler(handler)
    root.setLevel(level)
