"""The ack bench's HTTP client reads a response to the end of its body however the server
writes it: in pieces, ended by its length or by closing, on a connection kept open or not."""

from __future__ import annotations

import asyncio

import pytest

from bench.http_load import Client, post_request


async def serve(pieces: list[bytes], *, close_after: bool) -> tuple[asyncio.Server, list[bytes]]:
    """A server answering every request with `pieces`, a few milliseconds apart."""
    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:  # the client closed its connection
                    return
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                received.append(head + await reader.readexactly(length))
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.005)
                if close_after:
                    return
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0), received


def url_of(server: asyncio.Server) -> str:
    port = server.sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/slack/events"


def test_a_response_in_pieces_is_read_to_the_end_of_its_body() -> None:
    async def scenario() -> None:
        server, received = await serve(
            [b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\n\r\nhe", b"llo"], close_after=True
        )
        async with server:
            client = Client(url_of(server), keep_alive=False, timeout_s=5)
            request = post_request(url_of(server), "a=1", {"Content-Type": "x"}, keep_alive=False)

            assert await client.post(request) == 200
            assert received[0].startswith(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:")
            assert b"Connection: close\r\n" in received[0] and received[0].endswith(b"\r\n\r\na=1")

    asyncio.run(scenario())


def test_a_body_without_a_length_ends_when_the_server_closes() -> None:
    async def scenario() -> None:
        server, _ = await serve([b"HTTP/1.1 401 Unauthorized\r\n\r\n", b"no"], close_after=True)
        async with server:
            client = Client(url_of(server), keep_alive=False, timeout_s=5)

            assert await client.post(post_request(url_of(server), "", {}, keep_alive=False)) == 401

    asyncio.run(scenario())


def test_kept_alive_the_requests_share_one_connection() -> None:
    async def scenario() -> None:
        server, received = await serve(
            [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], close_after=False
        )
        async with server:
            client = Client(url_of(server), keep_alive=True, timeout_s=5)
            request = post_request(url_of(server), "x", {}, keep_alive=True)

            statuses = [await client.post(request) for _ in range(3)]
            client.close()

            assert statuses == [200, 200, 200] and len(received) == 3

    asyncio.run(scenario())


def test_a_server_that_closes_without_answering_is_an_error() -> None:
    async def scenario() -> None:
        server, _ = await serve([], close_after=True)
        async with server:
            client = Client(url_of(server), keep_alive=False, timeout_s=5)

            with pytest.raises(ConnectionResetError):
                await client.post(post_request(url_of(server), "x", {}, keep_alive=False))

    asyncio.run(scenario())
