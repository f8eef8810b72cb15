"""The Slack deliverer behind the outbox worker: 429 waits for Retry-After, 5xx retries,
a permanent refusal is recorded and reported, a retried message repeats no Slack call,
and new kinds plug in through the renderer registry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import SecretStr
from slack_sdk import WebClient
from sqlalchemy import select

from approvals import outbox
from approvals.tables import OutboxRow
from bot.outbox_worker import OutboxWorker
from bot.settings import Settings
from bot.slack.app import SlackBot, build_slack
from bot.slack.delivery import DeliveryContext, SlackDeliverer
from bot.slack.renderers import RENDERERS
from bot.slack.views.card import notice
from bot.wiring import Core
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import ALICE, BOB, BOT_TOKEN, CHANNEL, SIGNING_SECRET
from workspaces.clock import ManualClock

ACCESS = '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'


@pytest.fixture
def bot(core: Core, fake_slack: FakeSlack) -> Iterator[SlackBot]:
    settings = Settings(
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=fake_slack.base_url,
    )
    built = build_slack(core, settings)
    yield built
    built.edge.close()


@pytest.fixture
def worker(core: Core, bot: SlackBot) -> OutboxWorker:
    return OutboxWorker(core.store, bot.deliverer, core.clock, core.config)


def rows(core: Core) -> list[OutboxRow]:
    with core.store.transaction() as session:
        return list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def cards_in_channel(slack: FakeSlack) -> list[str]:
    return [m.ts for m in slack.messages_in(CHANNEL) if m.thread_ts is None]


def test_rate_limited_post_waits_for_retry_after(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    core.service.handle_text("alice", ACCESS)
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=7)
    assert worker.run_once() == 0
    (row,) = rows(core)
    assert row.next_attempt_at == clock.now() + timedelta(seconds=7)
    clock.advance(timedelta(seconds=6))
    assert worker.run_once() == 0
    assert len(fake_slack.calls("chat.postMessage")) == 1  # nothing tried before Retry-After
    clock.advance(timedelta(seconds=1))
    assert worker.run_once() == 1
    assert len(cards_in_channel(fake_slack)) == 1


def test_server_error_is_retried_later(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    core.service.handle_text("alice", ACCESS)
    fake_slack.fail_next("chat.postMessage", status=500)
    assert worker.run_once() == 0
    assert rows(core)[0].status == "pending"
    clock.advance(timedelta(minutes=1))
    assert worker.run_once() == 1
    assert len(cards_in_channel(fake_slack)) == 1


def test_channel_not_found_is_recorded_and_reported_to_the_leads(
    core: Core, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    core.service.handle_text("alice", ACCESS)
    fake_slack.fail_permanently(CHANNEL, "channel_not_found")
    worker.run_once()
    card_row = rows(core)[0]
    assert card_row.status == "failed" and "channel_not_found" in (card_row.last_error or "")
    worker.run_once()
    report = fake_slack.messages_in(BOB)
    assert report and "could not deliver" in report[0].all_text


def test_a_retried_notice_does_not_repeat_its_thread_reply(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    core.service.handle_text("alice", ACCESS)
    worker.run_once()
    core.service.handle_text("bob", "/aml deny 1 --reason 'use the shared lake instead'")
    fake_slack.fail_permanently(ALICE, "ratelimited")  # the DM step fails for a while
    worker.run_once()
    fake_slack.clear_failures()
    clock.advance(timedelta(minutes=5))
    worker.run_once()
    card = cards_in_channel(fake_slack)[0]
    assert len(fake_slack.replies(CHANNEL, card)) == 1
    assert len(fake_slack.messages_in(ALICE)) == 1
    assert all(row.status == "sent" for row in rows(core))


def test_a_card_deleted_in_slack_is_posted_again_on_update(
    core: Core, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    core.service.handle_text("alice", ACCESS)
    worker.run_once()
    (first,) = cards_in_channel(fake_slack)
    WebClient(token=BOT_TOKEN, base_url=fake_slack.base_url).chat_delete(channel=CHANNEL, ts=first)
    core.service.handle_text("bob", "/aml approve 1")
    worker.run_once()
    (again,) = cards_in_channel(fake_slack)
    assert again != first and "done" in fake_slack.message(CHANNEL, again).all_text


def digest(row: OutboxRow, context: DeliveryContext) -> None:
    """A kind another module adds, as the notifications engineer's would be."""
    context.post(row, "digest", channel=CHANNEL, message=notice(row.payload["text"]))


def test_new_kinds_plug_in_through_the_renderer_table(
    core: Core, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    deliverer = SlackDeliverer(
        core,
        bot.web_client,
        bot.edge.identity,
        renderers={**RENDERERS, "tests.digest": digest},
    )
    worker = OutboxWorker(core.store, deliverer, core.clock, core.config)
    with core.store.transaction() as session:
        outbox.enqueue(session, "tests.digest", {"text": "2 idle clusters"}, now=core.clock.now())
    assert worker.run_once() == 1
    assert fake_slack.last_message(CHANNEL).text == "2 idle clusters"


def test_an_unknown_kind_is_kept_for_later_not_dropped(core: Core, worker: OutboxWorker) -> None:
    with core.store.transaction() as session:
        outbox.enqueue(session, "tests.nobody", {"text": "?"}, now=core.clock.now())
    assert worker.run_once() == 0
    (row,) = rows(core)
    assert row.status == "pending" and "no Slack renderer" in (row.last_error or "")
