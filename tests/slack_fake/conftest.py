"""Fixtures for the Slack test infrastructure's own tests: a fake Slack, a client on it,
and a bare Bolt AsyncApp served by uvicorn that records what its listeners received."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk import WebClient
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.slack_api import FakeSlack

TOKEN = "xoxb-test"
SIGNING_SECRET = "test-signing-secret"
CHANNEL = "C0DEMO0001"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"
DEMO_USERS = {
    ALICE: "alice@example.com",
    BOB: "bob@example.com",
    CAROL: "carol@example.com",
}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN, channels={CHANNEL}, users=DEMO_USERS) as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.base_url, timeout=5)


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app on uvicorn on 127.0.0.1 in a background thread; yields its URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 5 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        listener.close()


@dataclass
class Received:
    """What the bare app's listeners were handed, in arrival order."""

    commands: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    submissions: list[dict[str, Any]] = field(default_factory=list)
    home_opened: list[dict[str, Any]] = field(default_factory=list)
    retry_nums: list[str | None] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.commands or self.actions or self.submissions or self.home_opened)


@dataclass
class BareApp:
    url: str
    received: Received


def _bare_bolt_app(slack: FakeSlack, received: Received) -> Starlette:
    app = AsyncApp(
        signing_secret=SIGNING_SECRET,
        client=AsyncWebClient(token=TOKEN, base_url=slack.base_url),
        process_before_response=True,
    )

    @app.command("/aml")
    async def aml(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await ack()
        received.commands.append(command)
        retry = request.headers.get("x-slack-retry-num")
        received.retry_nums.append(retry[0] if retry else None)
        await respond(f"got `{command['text']}`")

    @app.action("approve")
    async def approve(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        received.actions.append(body)
        container = body["container"]
        await client.chat_update(
            channel=container["channel_id"],
            ts=container["message_ts"],
            text=f"Approved by <@{body['user']['id']}>",
        )

    @app.view("deny_reason")
    async def deny_reason(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        received.submissions.append(body)
        reason = view["state"]["values"]["reason"]["reason_input"]["value"] or ""
        if len(reason) < 5:
            await ack(response_action="errors", errors={"reason": "Say why in a few words."})
            return
        await ack()

    @app.event("app_home_opened")
    async def home(event: dict[str, Any], client: AsyncWebClient) -> None:
        received.home_opened.append(event)
        await client.views_publish(
            user_id=event["user"],
            view={
                "type": "home",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hello"}}],
            },
        )

    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


@pytest.fixture
def bare_app(slack: FakeSlack) -> Iterator[BareApp]:
    received = Received()
    with serve_in_thread(_bare_bolt_app(slack, received)) as url:
        yield BareApp(url, received)
