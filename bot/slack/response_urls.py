"""Posting a message to a `response_url` (the answer to a command or a click) over
connections kept open.

slack_sdk's `WebhookClient` opens a connection per message, so every reply paid a TCP (and,
to Slack, a TLS) handshake: measured in the worker, about a third of the CPU of answering
`/aml compute list` and most of answering `/aml help`. One pool per process, shared by its
worker threads (urllib3's pools are thread-safe), keeps a few connections per host open.

As `WebhookClient` did: an `HTTPS_PROXY`/`HTTP_PROXY` from the environment is used, and a
connection that failed before an answer came (refused, reset, closed by the server while
idle in the pool) is tried once more on a fresh one; a timeout waiting for the answer is
not retried, since Slack may have posted the message.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from slack_sdk.proxy_env_variable_loader import load_http_proxy_from_env
from urllib3.exceptions import NewConnectionError, ProtocolError

# What slack_sdk's retry handler retried once: no connection, or one dropped under us.
_RETRIED = (NewConnectionError, ProtocolError)
_HEADERS = {"Content-Type": "application/json;charset=utf-8"}


class ResponseUrls:
    def __init__(self, *, timeout: float = 10.0, connections_per_host: int = 16) -> None:
        options: dict[str, Any] = {
            "num_pools": 8,  # hosts kept: Slack's, and a test's fake
            "maxsize": connections_per_host,
            "block": False,  # past maxsize a thread opens one more instead of waiting
            "retries": False,
            "timeout": urllib3.Timeout(total=timeout),
        }
        proxy = load_http_proxy_from_env()
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        )

    def post(self, url: str, message: dict[str, Any]) -> int:
        """POST `message` as JSON to `url`; the HTTP status Slack answered."""
        body = json.dumps(message).encode("utf-8")
        try:
            response = self._pool.request("POST", url, body=body, headers=_HEADERS)
        except _RETRIED:
            response = self._pool.request("POST", url, body=body, headers=_HEADERS)
        return response.status

    def close(self) -> None:
        self._pool.clear()
