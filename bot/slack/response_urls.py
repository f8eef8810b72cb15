"""Posting a message to a `response_url` (the answer to a command or a click) over
connections kept open.

slack_sdk's `WebhookClient` opens a connection per message, so every reply paid a TCP (and,
to Slack, a TLS) handshake. Each worker thread keeps one connection per host open instead,
with the standard library's `http.client`: a reply is most of what answering `/aml help`
costs a worker, and urllib3's pool around the same `http.client` doubled that (224 against
108 us of CPU a post, measured on this project's 2-core machine; with `help`'s text also
built once, the `work` child's CPU per `/aml help` fell from 550-620 to 380-430 us,
bench/README.md). A connection is its thread's own: nothing waits for another thread's reply.

As `WebhookClient` did: an `HTTPS_PROXY`/`HTTP_PROXY` from the environment is used (an
`https://` reply through a `CONNECT` tunnel; the proxy itself is spoken to in plain HTTP,
as slack_sdk's `WebClient` does), and a connection that failed before an answer
came (refused, reset, closed by the server while idle) is tried once more on a fresh one;
a timeout waiting for the answer is not retried, since Slack may have posted the message.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
import threading
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from slack_sdk.proxy_env_variable_loader import load_http_proxy_from_env

log = logging.getLogger(__name__)
_HEADERS = {"Content-Type": "application/json;charset=utf-8"}


class ResponseUrls:
    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = timeout
        proxy = load_http_proxy_from_env()
        self._proxy = urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        self._tls = ssl.create_default_context()
        # A plain-http reply through a proxy carries the proxy's credentials itself; an
        # https one gives them only to the CONNECT (`_open`), never to Slack.
        self._proxied_headers = _HEADERS | self._proxy_headers()
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []  # every thread's, for `close`
        self._opened_lock = threading.Lock()

    def post(self, url: str, message: dict[str, Any]) -> int:
        """POST `message` as JSON to `url`; the HTTP status Slack answered."""
        target = urlsplit(url)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise ValueError("a response_url is an http(s) URL")
        body = json.dumps(message).encode("utf-8")
        request_target, headers = self._request_target(target)
        for attempt in (1, 2):
            connection = self._connection(target)
            try:
                connection.request("POST", request_target, body, headers)
                response = connection.getresponse()
                response.read()
                # The host only: a response_url's path is a credential for half an hour.
                log.debug("a response_url on %s answered %s", target.hostname, response.status)
                return response.status
            except ConnectionError:  # refused, reset or closed before an answer
                self._forget(target, connection)
                if attempt == 2:
                    raise
            except BaseException:  # a timeout among them: the connection's state is unknown
                self._forget(target, connection)
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()

    def _connection(self, target: SplitResult) -> http.client.HTTPConnection:
        kept: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("kept", {})
        key = f"{target.scheme}://{target.netloc}"
        connection = kept.get(key)
        if connection is None:
            connection = kept[key] = self._open(target)
            with self._opened_lock:
                self._opened.append(connection)
        return connection

    def _forget(self, target: SplitResult, connection: http.client.HTTPConnection) -> None:
        self._local.__dict__.get("kept", {}).pop(f"{target.scheme}://{target.netloc}", None)
        connection.close()
        with self._opened_lock:
            if connection in self._opened:
                self._opened.remove(connection)

    def _open(self, target: SplitResult) -> http.client.HTTPConnection:
        host = target.hostname or ""
        https = target.scheme == "https"
        port = target.port or (443 if https else 80)
        if self._proxy is None:
            if https:
                return http.client.HTTPSConnection(
                    host, port, timeout=self._timeout, context=self._tls
                )
            return http.client.HTTPConnection(host, port, timeout=self._timeout)
        proxy_host, proxy_port = self._proxy.hostname or "", self._proxy.port or 80
        if https:  # TLS to Slack inside a CONNECT tunnel through the proxy
            tunnel = http.client.HTTPSConnection(
                proxy_host, proxy_port, timeout=self._timeout, context=self._tls
            )
            tunnel.set_tunnel(host, port, headers=self._proxy_headers())
            return tunnel
        return http.client.HTTPConnection(proxy_host, proxy_port, timeout=self._timeout)

    def _request_target(self, target: SplitResult) -> tuple[str, dict[str, str]]:
        """What the request line names, and the headers to send with it."""
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        if self._proxy is not None and target.scheme == "http":
            # A proxy is asked for the absolute URL, with its credentials.
            return f"http://{target.netloc}{path}", self._proxied_headers
        return path, _HEADERS

    def _proxy_headers(self) -> dict[str, str]:
        if self._proxy is None or self._proxy.username is None:
            return {}
        user = f"{unquote(self._proxy.username)}:{unquote(self._proxy.password or '')}"
        return {"Proxy-Authorization": "Basic " + base64.b64encode(user.encode()).decode()}
