"""Replies to response_urls go over kept-alive connections: one per host for a run of
replies, a connection dropped under us is tried once more, a reply that timed out is not
(Slack may have posted it)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from bot.slack.response_urls import ResponseUrls


class Seen:
    def __init__(self) -> None:
        self.connections = 0
        self.messages: list[dict[str, object]] = []


@contextmanager
def keep_alive_server(seen: Seen) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            seen.connections += 1

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.messages.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/response_url/1"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def raw_server(answer: Callable[[socket.socket, int], None]) -> Iterator[tuple[str, list[int]]]:
    """A server that reads each request and lets `answer(connection, n)` reply (or not)."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[int] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                requests.append(len(requests) + 1)
                answer(connection, len(requests))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/response_url/1", requests
    finally:
        listener.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def test_replies_to_one_host_share_one_connection() -> None:
    seen = Seen()
    replies = ResponseUrls()
    with keep_alive_server(seen) as url:
        statuses = [replies.post(url, {"text": f"reply {n}"}) for n in range(5)]
    replies.close()
    assert statuses == [200] * 5
    assert [m["text"] for m in seen.messages] == [f"reply {n}" for n in range(5)]
    assert seen.connections == 1


def test_a_connection_dropped_before_the_answer_is_tried_once_more() -> None:
    def drop_the_first(connection: socket.socket, n: int) -> None:
        if n > 1:
            connection.sendall(OK)

    with raw_server(drop_the_first) as (url, requests):
        assert ResponseUrls().post(url, {"text": "hello"}) == 200
    assert requests == [1, 2]


def test_a_reply_that_timed_out_is_not_sent_again() -> None:
    silent = threading.Event()

    def never_answer(connection: socket.socket, n: int) -> None:
        silent.wait(5)

    with raw_server(never_answer) as (url, requests):
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            ResponseUrls(timeout=0.3).post(url, {"text": "hello"})
        silent.set()
    assert requests == [1]
