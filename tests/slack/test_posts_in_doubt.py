"""A post whose answer never came is not posted twice.

`chat.postMessage` has no idempotency key. The outbox writes each post's attempt down
before making it and tags the message with its (outbox row, step) as metadata; when the
answer is lost after Slack posted (a 5xx from a proxy, a timeout, a process killed while
Slack answered: the last one is `tests/e2e/test_kill_loop.py`), the retry finds the
message in the conversation and records it instead of posting again. Without the history
scopes it cannot look, posts again and says so."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from approvals import outbox
from approvals.slack_tables import SlackSentStepRow
from approvals.tables import OutboxRow
from bot.outbox_worker import OutboxWorker
from bot.settings import Settings
from bot.slack.app import SlackBot, build_slack
from bot.slack.delivery import POST_EVENT_TYPE
from bot.wiring import Core
from tests.fakes.slack_api import ALL_SCOPES, FakeSlack, Message
from tests.slack.conftest import ALICE, BOT_TOKEN, CHANNEL, SIGNING_SECRET, USERS
from workspaces.clock import ManualClock

ACCESS = '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'
HISTORY_SCOPES = {"channels:history", "groups:history", "im:history"}


def slack_bot(core: Core, slack: FakeSlack) -> SlackBot:
    settings = Settings(
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=slack.base_url,
    )
    return build_slack(core, settings)


@pytest.fixture
def worker(core: Core, fake_slack: FakeSlack) -> Iterator[OutboxWorker]:
    bot = slack_bot(core, fake_slack)
    yield OutboxWorker(core.store, bot.deliverer, core.clock, core.config)
    bot.edge.close()


def deliver_all(worker: OutboxWorker, clock: ManualClock, core: Core) -> None:
    """Run the worker as `amlbot serve` does, past any backoff, until nothing is pending."""
    for _ in range(60):
        worker.run_once()
        with core.store.transaction() as session:
            pending = session.scalars(select(OutboxRow).where(OutboxRow.status == "pending"))
            if not list(pending):
                return
        clock.advance(timedelta(seconds=30))
    raise AssertionError("the outbox did not drain")


def everything_posted(slack: FakeSlack, *channels: str) -> list[Message]:
    return [m for channel in channels for m in slack.messages_in(channel)]


def tags(messages: list[Message]) -> Counter[tuple[int, str]]:
    """How often each (outbox row, step) shows in Slack."""
    found: Counter[tuple[int, str]] = Counter()
    for message in messages:
        assert message.metadata is not None, f"posted without its tag: {message.text!r}"
        assert message.metadata["event_type"] == POST_EVENT_TYPE
        payload = message.metadata["event_payload"]
        found[(payload["outbox_id"], payload["step"])] += 1
    return found


def in_doubt(core: Core, outcome: str) -> float:
    value = core.metrics.registry.get_sample_value(
        "amlbot_slack_posts_in_doubt_total", {"outcome": outcome}
    )
    return value or 0.0


def notice_to_channel(core: Core, text: str) -> None:
    with core.store.transaction() as session:
        outbox.enqueue(
            session,
            outbox.CHANNEL_NOTICE,
            {"workspace": "demo", "text": text},
            now=core.clock.now(),
        )


def test_a_channel_post_whose_answer_was_lost_is_found_not_posted_again(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    notice_to_channel(core, "the cluster is idle")
    fake_slack.lose_answer("chat.postMessage", status=500)

    assert worker.run_once() == 0  # Slack posted, the bot heard a 500
    with core.store.transaction() as session:
        (attempt,) = session.scalars(select(SlackSentStepRow))
    assert attempt.ts is None and attempt.attempted_at is not None  # in doubt
    deliver_all(worker, clock, core)

    assert [m.text for m in fake_slack.messages_in(CHANNEL)] == ["the cluster is idle"]
    assert len(fake_slack.calls("chat.postMessage")) == 1
    (looked,) = fake_slack.calls("conversations.history")
    assert looked.params["channel"] == CHANNEL and looked.params["include_all_metadata"]
    assert in_doubt(core, "found") == 1
    with core.store.transaction() as session:
        (done,) = session.scalars(select(SlackSentStepRow))
    assert done.ts == fake_slack.messages_in(CHANNEL)[0].ts


def test_a_dm_whose_answer_was_lost_is_found_in_the_dm(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    with core.store.transaction() as session:
        outbox.notify_person(session, "alice", "your job finished", now=clock.now())
    fake_slack.lose_answer("chat.postMessage", status=500)

    deliver_all(worker, clock, core)

    assert [m.text for m in fake_slack.messages_in(ALICE)] == ["your job finished"]
    (opened,) = fake_slack.calls("conversations.open")
    assert opened.params["users"] == ALICE
    (looked,) = fake_slack.calls("conversations.history")
    assert looked.params["channel"] == fake_slack.dm_channel_id(ALICE)


def test_thread_replies_and_cards_whose_answers_were_lost_show_once_each(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    assert core.service.handle_text("alice", ACCESS).ok
    fake_slack.lose_answer("chat.postMessage", status=500)  # the card
    deliver_all(worker, clock, core)
    assert core.service.handle_text("bob", "/aml approve 1").ok
    # Every post of the approval and its outcome (thread replies, DMs) loses its answer.
    fake_slack.lose_answer("chat.postMessage", status=500, times=10)
    deliver_all(worker, clock, core)

    posted = everything_posted(fake_slack, CHANNEL, ALICE)
    counted = tags(posted)
    assert counted and set(counted.values()) == {1}, counted
    cards = [m for m in fake_slack.messages_in(CHANNEL) if m.thread_ts is None]
    assert len(cards) == 1
    thread = fake_slack.replies(CHANNEL, cards[0].ts)
    assert any("done" in m.text for m in thread), [m.text for m in thread]
    assert fake_slack.calls("conversations.replies"), "the thread replies were looked up"
    assert in_doubt(core, "found") == len(posted)


def test_a_post_slack_refused_is_not_looked_for(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    notice_to_channel(core, "the cluster is idle")
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=1)

    assert worker.run_once() == 0
    with core.store.transaction() as session:
        assert list(session.scalars(select(SlackSentStepRow))) == []  # struck out
    deliver_all(worker, clock, core)

    assert [m.text for m in fake_slack.messages_in(CHANNEL)] == ["the cluster is idle"]
    assert fake_slack.calls("conversations.history") == []
    assert in_doubt(core, "found") + in_doubt(core, "not_found") == 0


def test_a_lost_answer_before_slack_posted_is_posted_once(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, worker: OutboxWorker
) -> None:
    """A 500 that Slack really failed on: the look-up finds nothing, so the retry posts."""
    notice_to_channel(core, "the cluster is idle")
    fake_slack.fail_next("chat.postMessage", status=500)

    deliver_all(worker, clock, core)

    assert [m.text for m in fake_slack.messages_in(CHANNEL)] == ["the cluster is idle"]
    assert in_doubt(core, "not_found") == 1


def test_without_the_history_scopes_the_post_is_repeated_and_said_so(
    core: Core, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeSlack(
        token=BOT_TOKEN, channels={CHANNEL}, users=USERS, scopes=ALL_SCOPES - HISTORY_SCOPES
    ) as slack:
        bot = slack_bot(core, slack)
        try:
            worker = OutboxWorker(core.store, bot.deliverer, core.clock, core.config)
            notice_to_channel(core, "the cluster is idle")
            slack.lose_answer("chat.postMessage", status=500)
            with caplog.at_level(logging.WARNING):
                deliver_all(worker, clock, core)
        finally:
            bot.edge.close()

        texts = [m.text for m in slack.messages_in(CHANNEL)]
    assert texts == ["the cluster is idle"] * 2  # at-least-once, as the README says
    assert in_doubt(core, "unverifiable") == 1
    warning = next(r.getMessage() for r in caplog.records if "may show twice" in r.getMessage())
    assert "missing_scope" in warning and "history scopes" in warning
