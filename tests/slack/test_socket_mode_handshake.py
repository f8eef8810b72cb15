"""The Socket Mode connection `serve` opens gives up on a websocket handshake nobody
answers and tries again, as after any failed connect; and it bounds only the handshake,
never a websocket that is open and quiet. slack_sdk's real client, against a TCP peer
that accepts and stays silent, and against the fake Socket Mode endpoint."""

from __future__ import annotations

import asyncio
import io

import pytest
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from bot.serve import _socket_mode_logger, bound_the_handshake
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_socket_mode import FakeSocketMode
from tests.json_logs import entries
from tests.slack.conftest import BOT_TOKEN

pytestmark = pytest.mark.timeout(60)
BOUND = 0.3  # seconds; `serve` uses HANDSHAKE_TIMEOUT (10)


def test_a_handshake_nobody_answers_is_given_up_and_tried_again(
    json_logs: io.StringIO,
) -> None:
    accepted = 0

    async def connect_to_a_silent_peer() -> None:
        nonlocal accepted
        held: list[asyncio.StreamWriter] = []

        async def accept_and_say_nothing(
            _: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            nonlocal accepted
            accepted += 1
            held.append(writer)

        server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = SocketModeClient(
            app_token="xapp-1-A0-0-test",
            logger=_socket_mode_logger(),
            web_client=AsyncWebClient(token="xoxb-test"),
            ping_interval=0.05,  # the pause between tries
        )
        await bound_the_handshake(client, BOUND)
        client.wss_uri = f"ws://127.0.0.1:{port}/link"
        connecting = asyncio.ensure_future(client.connect())
        try:
            # Unbounded, aiohttp would wait 300 s on the first handshake.
            for _ in range(500):
                if accepted >= 2:
                    break
                await asyncio.sleep(0.02)
        finally:
            connecting.cancel()
            await client.close()
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()

    asyncio.run(connect_to_a_silent_peer())

    assert accepted >= 2, "the client never gave up on the first handshake"
    failures = [e for e in entries(json_logs) if "Failed to connect" in e["message"]]
    assert failures, "the handshake that timed out was not logged"
    assert {e["level"] for e in failures} == {"WARNING"}
    assert "Timeout" in failures[0]["message"]


def test_an_open_websocket_may_stay_quiet_longer_than_the_handshake_bound() -> None:
    with FakeSlack(token=BOT_TOKEN) as slack, FakeSocketMode(slack) as socket_mode:

        async def connect_wait_and_receive() -> list[str]:
            received: list[str] = []

            async def remember(_: object, message: dict[str, object], __: str | None) -> None:
                received.append(str(message.get("envelope_id", message.get("type"))))

            client = SocketModeClient(
                app_token=socket_mode.app_token,
                logger=_socket_mode_logger(),
                web_client=AsyncWebClient(base_url=slack.base_url),
                ping_interval=30,  # no ping in the quiet spell below
            )
            client.message_listeners.append(remember)  # type: ignore[arg-type]
            await bound_the_handshake(client, BOUND)
            try:
                await client.connect()
                await asyncio.sleep(BOUND * 4)  # quiet, both ways
                envelope_id = await asyncio.to_thread(
                    socket_mode.send, "events_api", {"type": "event_callback"}
                )
                for _ in range(250):
                    if envelope_id in received:
                        break
                    await asyncio.sleep(0.02)
                assert envelope_id in received, f"the envelope never arrived: {received}"
            finally:
                await client.close()
            return received

        received = asyncio.run(connect_wait_and_receive())

        assert received[0] == "hello"
        assert socket_mode.connections_opened == 1  # the quiet connection was never dropped
