"""The issue's "Done when", assembled the way `amlbot serve --http` is asked to run it: the
Slack app with this package's registrar and the Event Grid route, the outbox worker thread,
and the notification scheduler waking it. Driven only through Slack and the clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from bot.eventgrid_webhook import eventgrid_routes
from bot.outbox_worker import OutboxWorker
from bot.services import OutboxLoop, StoppingWorker, background_services
from bot.settings import Settings
from bot.slack.app import build_slack
from bot.slack.http import asgi_app
from bot.slack.listeners.notices import register_slack_actions
from bot.wiring import Core
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_signing import post_signed, slash_command_body
from tests.notify.conftest import (
    ALICE,
    CHANNEL,
    ENV,
    EVENTGRID_SECRET,
    NotifyBot,
    start_notifications,
)
from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET, AppServer, wait_for
from workspaces.clock import ManualClock

TICK = timedelta(milliseconds=50)


@pytest.fixture
def served(core: Core, clock: ManualClock, fake_slack: FakeSlack) -> Iterator[NotifyBot]:
    settings = Settings(
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=fake_slack.base_url,
    )
    bot = build_slack(core, settings, extra_registrars=[register_slack_actions])
    services = background_services(core, bot)
    outbox = next(s for s in services if s.name == "outbox")
    assert isinstance(outbox, OutboxLoop)
    for service in services:
        service.start()
    scheduler = start_notifications(core, tick=TICK, on_change=outbox.wake)
    app = Starlette(
        routes=[
            *asgi_app(bot).routes,
            *eventgrid_routes(core, secret=EVENTGRID_SECRET, on_accepted=bot.edge.on_accepted),
        ]
    )
    try:
        with AppServer(app) as server:
            worker = OutboxWorker(core.store, bot.deliverer, core.clock, core.config)
            inbox_worker = next(s for s in services if s.name == "inbox")
            assert isinstance(inbox_worker, StoppingWorker)
            yield NotifyBot(core, clock, fake_slack, bot, worker, server.url, inbox_worker.worker)
    finally:
        scheduler.stop()
        for service in reversed(services):
            service.stop()
        bot.edge.close()


def dm(bot: NotifyBot, user: str, containing: str) -> Message:
    return wait_for(
        lambda: next((m for m in bot.slack.messages_in(user) if containing in m.text), None),
        what=f"a DM to {user} containing {containing!r}",
    )


def command(bot: NotifyBot, user: str, text: str) -> None:
    body = slash_command_body(
        text, user_id=user, channel_id=CHANNEL, response_url=bot.slack.response_url(CHANNEL, user)
    )
    assert post_signed(bot.url, "/slack/events", body, secret=SIGNING_SECRET).status == 200


def test_a_job_from_slack_reports_completion_and_the_digest_and_revocation_happen(
    served: NotifyBot, core: Core, clock: ManualClock
) -> None:
    # The idle digest appears on schedule in the workspace channel, with its buttons.
    digest = wait_for(
        lambda: next(
            (m for m in served.slack.messages_in(CHANNEL) if m.text.startswith("Idle compute")),
            None,
        ),
        what="the idle digest",
    )
    assert "Set minimum to 0" in digest.all_text and "Snooze 1 h" in digest.all_text

    command(served, ALICE, f'job submit --compute cpu-cluster --environment {ENV} --command "x"')
    submitted = served.answer_to(ALICE, "submitted")
    name = submitted.split("`")[1]
    clock.advance(timedelta(minutes=5))
    completed = dm(served, ALICE, f"Job `{name}` completed")
    assert "Metrics:" in completed.all_text

    command(served, ALICE, 'access request gpu-cluster --for 1h --reason "fine-tune"')
    served.answer_to(ALICE, "waiting for a team lead")
    assert core.service.handle_text("bob", "approve 2").ok
    dm(served, ALICE, "has access to `gpu-cluster`")
    clock.advance(timedelta(hours=1, minutes=1))
    dm(served, ALICE, "was revoked: it expired")
