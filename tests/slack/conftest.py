"""The real Bolt app in HTTP mode, on uvicorn in a thread on 127.0.0.1, talking to the fake
Slack Web API, with the real outbox worker beside it. Tests send it signed requests the
way Slack does and look at what the fake Slack shows."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from pydantic import SecretStr

from bot.processes import BackgroundService
from bot.services import background_services, slack_registrars
from bot.settings import Settings
from bot.slack.app import SlackBot, build_slack
from bot.slack.edge import SlackOptions
from bot.slack.http import asgi_app
from bot.wiring import Core, build_core
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_signing import (
    DEMO_CHANNEL_ID,
    SignedResponse,
    app_home_opened_payload,
    block_actions_payload,
    event_body,
    interactive_body,
    post_signed,
    slash_command_body,
    view_submission_payload,
)
from workspaces.clock import ManualClock

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-amlbot-test"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"
STRANGER = "U0STRANGE1"
CHANNEL = DEMO_CHANNEL_ID
USERS = {
    ALICE: "alice@example.com",
    BOB: "bob@example.com",
    CAROL: "carol@example.com",
    STRANGER: "stranger@example.com",
}

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], *, timeout: float = 5.0, what: str = "it") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except LookupError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def scrape(url: str) -> dict[str, float]:
    """`GET url` (a `/metrics` endpoint) as {"name{label="value",...}": value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def start_serve(
    *args: str, env: Mapping[str, str], stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """`amlbot serve ARGS` in its own process, as the README runs it, configured by `env`
    alone: no SLACK_* or AMLBOT_* variable of the test's own environment leaks in."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMLBOT_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", *args],
        cwd=ROOT,
        # Hermetic: no call to the public Azure Retail Prices API unless a test asks.
        # Stopped by SIGTERM, a test's server stops at once unless the test asks to drain.
        env={
            **inherited,
            "AMLBOT_LOG_LEVEL": "WARNING",
            "AMLBOT_RETAIL_PRICES_URL": "off",
            "AMLBOT_DRAIN_SECONDS": "0",
            **env,
        },
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_serve_http(
    port: int, work_health_port: int, *, env: Mapping[str, str], stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """`amlbot serve --http` on 127.0.0.1:`port`, its worker's probes on `work_health_port`:
    not serve's default (the port after `port`), which another socket may hold."""
    return start_serve(
        "--http",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--work-health-port",
        str(work_health_port),
        env=env,
        stdout=stdout,
    )


class AppServer:
    """uvicorn serving the ASGI app in a thread, on a port of its own."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> AppServer:
        self.thread.start()
        wait_for(lambda: self.server.started, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@dataclass
class SlackHarness:
    core: Core
    bot: SlackBot
    slack: FakeSlack
    url: str
    clock: ManualClock
    services: list[BackgroundService] = field(default_factory=list)

    # ---- sending, as Slack does ------------------------------------------------------

    def command(self, user: str, text: str, *, channel: str = CHANNEL) -> SignedResponse:
        body = slash_command_body(
            text,
            user_id=user,
            channel_id=channel,
            response_url=self.slack.response_url(channel, user),
        )
        return self.post(body)

    def click(
        self, user: str, action_id: str, request_id: int | str, card: Message | None = None
    ) -> SignedResponse:
        return self.post(interactive_body(self.click_payload(user, action_id, request_id, card)))

    def click_payload(
        self, user: str, action_id: str, request_id: int | str, card: Message | None = None
    ) -> dict[str, Any]:
        card = card or self.card(int(request_id))
        return block_actions_payload(
            action_id=action_id,
            user_id=user,
            value=str(request_id),
            block_id="decision",
            channel_id=card.channel,
            message_ts=card.ts,
            message={"type": "message", "text": card.text, "blocks": card.blocks},
            response_url=self.slack.response_url(card.channel, user, message_ts=card.ts),
        )

    def submit(
        self, user: str, callback_id: str, values: dict[str, Any], private_metadata: str
    ) -> SignedResponse:
        payload = view_submission_payload(
            callback_id=callback_id,
            user_id=user,
            values=values,
            private_metadata=private_metadata,
        )
        return self.post(interactive_body(payload))

    def open_home(self, user: str) -> SignedResponse:
        return self.post(event_body(app_home_opened_payload(user_id=user)))

    def post(self, body: str, **kwargs: Any) -> SignedResponse:
        return post_signed(self.url, "/slack/events", body, secret=SIGNING_SECRET, **kwargs)

    # ---- looking, with bounded waits -------------------------------------------------

    def answer_to(self, user: str, *, containing: str = "", after: int = 0) -> str:
        """The text of the newest ephemeral answer `user` got (response_url), waiting."""

        def find() -> str | None:
            for post in reversed(self.slack.response_posts()[after:]):
                if post.user == user and containing in post.text:
                    return post.text
            return None

        return wait_for(find, what=f"an answer to {user} containing {containing!r}")

    def card(self, request_id: int, channel: str = CHANNEL) -> Message:
        def find() -> Message | None:
            for message in self.slack.messages_in(channel):
                if message.thread_ts is None and message.text.startswith(f"#{request_id} "):
                    return message
            return None

        return wait_for(find, what=f"the card of #{request_id} in {channel}")

    def dm_to(self, user: str, containing: str) -> Message:
        return wait_for(
            lambda: next(
                (m for m in self.slack.messages_in(user) if containing in m.all_text), None
            ),
            what=f"a DM to {user} containing {containing!r}",
        )

    def request_id(self, reply: str) -> int:
        """The id in a 'Request #N ...' answer."""
        return int(reply.split("#", 1)[1].split()[0].rstrip(".,)"))

    def wake_outbox(self) -> None:
        self.bot.edge.on_core_done()

    def modal(self, callback_id: str) -> dict[str, Any]:
        return wait_for(
            lambda: next(
                (
                    v.view
                    for v in reversed(self.slack.views())
                    if v.view.get("callback_id") == callback_id
                ),
                None,
            ),
            what=f"a modal {callback_id}",
        )


def metadata_of(view: dict[str, Any]) -> str:
    return str(view.get("private_metadata") or json.dumps({}))


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack:
        yield slack


def http_settings(slack: FakeSlack) -> Settings:
    """Settings of a bot on Slack's HTTP endpoint, talking to `slack`."""
    return Settings(
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_app_token=None,
        slack_api_url=slack.base_url,
    )


@contextmanager
def running_bot(
    core: Core, clock: ManualClock, slack: FakeSlack, options: SlackOptions | None = None
) -> Iterator[SlackHarness]:
    """The bot as `amlbot serve --http` runs it: app, uvicorn, background services."""
    bot = build_slack(
        core, http_settings(slack), options=options, extra_registrars=slack_registrars()
    )
    services = background_services(core, bot)
    for service in services:
        service.start()
    try:
        with AppServer(asgi_app(bot)) as server:
            yield SlackHarness(core, bot, slack, server.url, clock, services)
    finally:
        for service in reversed(services):
            service.stop()
        bot.edge.close()


@contextmanager
def restarted(harness: SlackHarness) -> Iterator[SlackHarness]:
    """A second bot process on the same database: nothing carried over in memory."""
    url = harness.core.store.engine.url.render_as_string(hide_password=False)
    core = build_core(harness.core.config, database_url=url, clock=harness.clock)
    try:
        with running_bot(core, harness.clock, harness.slack) as again:
            yield again
    finally:
        core.store.engine.dispose()


@pytest.fixture
def harness(core: Core, clock: ManualClock, fake_slack: FakeSlack) -> Iterator[SlackHarness]:
    with running_bot(core, clock, fake_slack) as running:
        yield running
