"""The load's HTTP client: POSTs written whole to a socket and their responses read to the
end of the body, on asyncio's own transports.

Why not aiohttp: on the bench's two CPUs the load shares the machine with the server under
test, and aiohttp spent about 330 us of CPU per request (0.5-1 core at the rates measured),
so the load took CPU from the server it measured and queued its own requests behind it.
A request here is one `write` and a few lines of parsing. Only what the servers under test
answer is understood: HTTP/1.1 with a `Content-Length` (or a body ended by closing).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class _Exchange(asyncio.Protocol):
    """One connection: a request at a time, answered by its status once its body is in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiting = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self.transport.write(request)
        return self.waiting

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        status = self._complete()
        if status is not None and self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(status)

    def _complete(self, closing: bool = False) -> int | None:
        """The status once the whole response is in; None while it is not."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        status_line, *header_lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = None
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None and not closing:  # the body ends when the server closes
            return None
        if length is not None and len(self.buffer) - end - 4 < length:
            return None
        return int(status_line.split()[1])

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiting is not None and not self.waiting.done():
            status = self._complete(closing=True)
            if status is not None:
                self.waiting.set_result(status)
            else:
                self.waiting.set_exception(ConnectionResetError("closed before the response"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def post_request(url: str, body: str, headers: dict[str, str], keep_alive: bool) -> bytes:
    """The bytes of a POST of `body` to `url`, as they go on the wire."""
    parts = urlsplit(url)
    encoded = body.encode()
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Length: {len(encoded)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + encoded


class Client:
    """One of the load's clients: its requests one after another, each on a connection of
    its own, or on one kept open with `keep_alive`."""

    def __init__(self, url: str, keep_alive: bool, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.keep_alive = keep_alive
        self.timeout_s = timeout_s
        self._open: _Exchange | None = None

    async def post(self, request: bytes) -> int:
        """The response's status; raises OSError (refused, reset) or TimeoutError."""
        async with asyncio.timeout(self.timeout_s):
            exchange = self._open
            if exchange is None or exchange.lost:
                loop = asyncio.get_running_loop()
                _, exchange = await loop.create_connection(_Exchange, self.host, self.port)
            try:
                status = await exchange.send(request)
            except BaseException:
                exchange.close()
                self._open = None
                raise
        if self.keep_alive:
            self._open = exchange
        else:
            exchange.close()
        return status

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None
