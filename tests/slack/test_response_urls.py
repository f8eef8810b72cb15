"""Replies to response_urls go over kept-alive connections: one per host and worker thread
for a run of replies, a connection dropped under us is tried once more, a reply that timed
out is not (Slack may have posted it), and a proxy from the environment is used the way
slack_sdk's clients use it."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from bot.slack.response_urls import ResponseUrls


class Seen:
    def __init__(self) -> None:
        self.connections = 0
        self.messages: list[dict[str, object]] = []
        self.paths: list[str] = []
        self.proxy_authorization: list[str | None] = []


@contextmanager
def keep_alive_server(seen: Seen, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            seen.connections += 1

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.messages.append(json.loads(body))
            seen.paths.append(self.path)
            seen.proxy_authorization.append(self.headers["Proxy-Authorization"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme, host = ("https", "localhost") if tls else ("http", "127.0.0.1")
    try:
        yield f"{scheme}://{host}:{server.server_address[1]}/response_url/1?team=T1"
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


def test_replies_to_one_host_share_one_connection(caplog: pytest.LogCaptureFixture) -> None:
    seen = Seen()
    replies = ResponseUrls()
    with keep_alive_server(seen) as url, caplog.at_level("DEBUG", "bot.slack.response_urls"):
        statuses = [replies.post(url, {"text": f"reply {n}"}) for n in range(5)]
    replies.close()
    # Logged by host: the path of a response_url is a credential.
    assert caplog.messages == ["a response_url on 127.0.0.1 answered 200"] * 5
    assert statuses == [200] * 5
    assert [m["text"] for m in seen.messages] == [f"reply {n}" for n in range(5)]
    assert seen.paths == ["/response_url/1?team=T1"] * 5
    assert seen.connections == 1


def test_each_worker_thread_keeps_its_own_connection() -> None:
    seen = Seen()
    replies = ResponseUrls()
    with keep_alive_server(seen) as url, ThreadPoolExecutor(3) as threads:
        for _ in range(3):  # every thread busy at once, three rounds of it
            start = threading.Barrier(3)

            def post(n: int, start: threading.Barrier = start) -> int:
                start.wait(5)
                return replies.post(url, {"text": f"reply {n}"})

            assert list(threads.map(post, range(3))) == [200] * 3
    replies.close()
    assert len(seen.messages) == 9
    assert seen.connections == 3


@contextmanager
def connect_proxy(seen_lines: list[bytes]) -> Iterator[int]:
    """A forward proxy that answers `CONNECT` and then relays bytes both ways."""
    listener = socket.create_server(("127.0.0.1", 0))

    def relay(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(65536)
            seen_lines.append(head)
            _, authority, _ = head.split(b"\r\n")[0].split(b" ")
            upstream = socket.create_connection(("127.0.0.1", int(authority.rsplit(b":")[1])))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            threading.Thread(target=relay, args=(client, upstream), daemon=True).start()
            threading.Thread(target=relay, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_an_https_reply_goes_through_the_proxys_tunnel_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_tls)
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # what the client trusts
    seen, heads = Seen(), list[bytes]()
    with keep_alive_server(seen, tls=server_tls) as url, connect_proxy(heads) as proxy_port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://bot:s%40fe@127.0.0.1:{proxy_port}")
        replies = ResponseUrls()
        statuses = [replies.post(url, {"text": f"reply {n}"}) for n in range(3)]
        replies.close()
    assert statuses == [200] * 3
    [head] = heads  # one tunnel, kept for every reply
    port = url.split(":")[2].split("/")[0]
    assert head.startswith(f"CONNECT localhost:{port} HTTP/".encode())
    credentials = base64.b64encode(b"bot:s@fe").decode()
    assert f"Proxy-Authorization: Basic {credentials}".encode() in head
    assert seen.proxy_authorization == [None] * 3  # given to the proxy, not to Slack
    assert [m["text"] for m in seen.messages] == ["reply 0", "reply 1", "reply 2"]


def test_a_plain_http_reply_asks_the_proxy_for_the_whole_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = Seen()
    with keep_alive_server(seen) as proxy:  # the proxy's side of it: what it was asked
        proxy_port = proxy.split(":")[2].split("/")[0]
        monkeypatch.setenv("HTTP_PROXY", f"http://bot:pw@127.0.0.1:{proxy_port}")
        replies = ResponseUrls()
        assert replies.post("http://hooks.example/x/1?a=b", {"text": "hi"}) == 200
        replies.close()
    assert seen.paths == ["http://hooks.example/x/1?a=b"]
    assert seen.proxy_authorization == ["Basic " + base64.b64encode(b"bot:pw").decode()]


def test_a_url_that_is_not_http_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="http"):
        ResponseUrls().post("file:///etc/passwd", {"text": "hi"})


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
        with pytest.raises(TimeoutError):
            ResponseUrls(timeout=0.3).post(url, {"text": "hello"})
        silent.set()
    assert requests == [1]
