"""uvicorn's access log without query strings.

Azure Event Grid carries the webhook's shared secret as `?code=...` (the documented way to
configure an Event Grid subscription), and uvicorn's access log writes the whole request
line at INFO. Secrets never belong in logs, so every query string is cut from it.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from bot.logs import current_format

REDACTED = "?[redacted]"


class RedactQueryStrings(logging.Filter):
    """Replaces the query string of any request path in an access-log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def _without_query(value: object) -> object:
    if isinstance(value, str) and value.startswith("/") and "?" in value:
        return value.split("?", 1)[0] + REDACTED
    return value


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, with the filter on its access handler, in the
    format the process logs in (`bot/logs.py`)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    if current_format() == "json":
        for name in ("default", "access"):
            config["formatters"][name] = {"()": "bot.logs.JsonFormatter"}
    config.setdefault("filters", {})["redact_query_strings"] = {"()": RedactQueryStrings}
    config["handlers"]["access"].setdefault("filters", []).append("redact_query_strings")
    return config
