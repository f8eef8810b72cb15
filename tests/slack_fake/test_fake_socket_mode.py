"""The fake's Socket Mode endpoint hands a websocket URL only to the app-level token, once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_socket_mode import FakeSocketMode
from tests.slack_fake.conftest import TOKEN

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def socket_mode(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(slack) as fake:
        yield fake


@pytest.mark.parametrize(
    ("token", "error"),
    [(TOKEN, "not_allowed_token_type"), ("xapp-1-A0AMLBOT0-2-someone-else", "invalid_auth")],
)
def test_connections_open_takes_only_the_app_token(
    slack: FakeSlack, socket_mode: FakeSocketMode, token: str, error: str
) -> None:
    client = WebClient(base_url=slack.base_url, timeout=5)

    with pytest.raises(SlackApiError) as raised:
        client.apps_connections_open(app_token=token)

    assert raised.value.response["error"] == error


def test_a_connection_says_hello_records_acks_and_its_url_is_single_use(
    slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    client = WebClient(base_url=slack.base_url, timeout=5)
    url = str(client.apps_connections_open(app_token=socket_mode.app_token)["url"])

    async def connect_twice() -> tuple[dict[str, object], int]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url) as websocket:
                hello = await websocket.receive_json(timeout=5)
                await websocket.send_json({"envelope_id": "e-1", "payload": {"text": "hi"}})
                async with session.get(url) as again:
                    second_status = again.status
            # Closed: the server read everything sent before the close.
            return hello, second_status

    hello, second_status = asyncio.run(connect_twice())

    assert hello["type"] == "hello"
    assert second_status == 401
    assert [(a.envelope_id, a.payload) for a in socket_mode.acks()] == [("e-1", {"text": "hi"})]
