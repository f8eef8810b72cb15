"""The outbox through a Slack outage: a 429 pauses its method (and channel) for every
message and every worker without costing attempts; 5xx are probed by one message at a time
with a capped backoff, so everything arrives once, in order, within 15 s of recovery, and an
outage of any length dead-letters nothing; a message Slack keeps failing on while others
get through is dead-lettered and the leads are told."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from pydantic import SecretStr
from slack_sdk import WebClient
from sqlalchemy import select

from approvals import outbox
from approvals.tables import DeliveryPauseRow, OutboxRow
from bot.outbox_worker import OutboxWorker
from bot.settings import Settings
from bot.slack.app import SlackBot, build_slack
from bot.slack.delivery import SlackDeliverer
from bot.slack.renderers import RENDERERS
from bot.wiring import Core
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import ALICE, BOB, BOT_TOKEN, CHANNEL, SIGNING_SECRET
from workspaces.clock import ManualClock

RECOVERY_BOUND = timedelta(seconds=15)
POLL = timedelta(seconds=1)  # the outbox loop's poll in `amlbot serve`
REQUESTS = [
    ("alice", "gpu-cluster"),
    ("alice", "cpu-cluster"),
    ("carol", "gpu-cluster"),
    ("carol", "cpu-cluster"),
]


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


def a_worker(core: Core, bot: SlackBot, **options: int) -> OutboxWorker:
    return OutboxWorker(
        core.store, bot.deliverer, core.clock, core.config, rng=random.Random(8), **options
    )


def another_replica(core: Core, bot: SlackBot, fake_slack: FakeSlack) -> OutboxWorker:
    """A second process: its own Slack client and deliverer, the same database."""
    client = WebClient(token=BOT_TOKEN, base_url=fake_slack.base_url)
    deliverer = SlackDeliverer(core, client, bot.edge.identity, renderers=RENDERERS)
    return OutboxWorker(core.store, deliverer, core.clock, core.config, worker_id="replica-2")


def channel_notices(core: Core, count: int) -> None:
    with core.store.transaction() as session:
        for n in range(count):
            outbox.enqueue(
                session,
                outbox.CHANNEL_NOTICE,
                {"workspace": "demo", "text": f"notice {n}"},
                now=core.clock.now(),
            )


def four_cards_and_ten_notices(core: Core) -> None:
    for person, cluster in REQUESTS:
        reply = core.service.handle_text(
            person, f"/aml access request {cluster} --for 2h --reason 'fine-tune BERT'"
        )
        assert reply.ok, reply.text
    channel_notices(core, 10)


def rows(core: Core) -> list[OutboxRow]:
    with core.store.transaction() as session:
        return list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def posts(slack: FakeSlack) -> int:
    return len(slack.calls("chat.postMessage"))


def run_until_sent(
    worker: OutboxWorker, clock: ManualClock, core: Core, *, limit: timedelta
) -> datetime:
    """Poll as `amlbot serve` does until every message is sent; when the last one went."""
    deadline = clock.now() + limit
    while any(row.status == "pending" for row in rows(core)):
        assert clock.now() < deadline, [(r.id, r.last_error) for r in rows(core)]
        worker.run_once()
        clock.advance(POLL)
    return max(row.sent_at for row in rows(core) if row.sent_at is not None)


def test_a_429_pauses_the_method_for_every_message_without_spending_attempts(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    channel_notices(core, 5)
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=7)
    worker = a_worker(core, bot)

    assert worker.run_once() == 0
    assert posts(fake_slack) == 1  # the other four did not knock: the channel is paused
    assert all(r.attempts == 0 for r in rows(core))
    assert {r.next_attempt_at for r in rows(core)} == {clock.now() + timedelta(seconds=7)}

    clock.advance(timedelta(seconds=6))
    assert worker.run_once() == 0 and posts(fake_slack) == 1
    clock.advance(timedelta(seconds=1))
    assert worker.run_once() == 5
    assert [m.text for m in fake_slack.messages_in(CHANNEL)] == [f"notice {n}" for n in range(5)]
    assert all(r.attempts == 1 for r in rows(core))


def test_another_replica_honours_the_pause_one_worker_was_given(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    channel_notices(core, 1)
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=30)
    a_worker(core, bot).run_once()
    channel_notices(core, 1)

    assert another_replica(core, bot, fake_slack).run_once() == 0

    assert posts(fake_slack) == 1
    with core.store.transaction() as session:
        (pause,) = session.scalars(select(DeliveryPauseRow))
    assert pause.scope == f"chat.postMessage:{CHANNEL}" and pause.cause == "rate_limited"


def test_a_429_on_one_channel_does_not_hold_back_another(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    channel_notices(core, 1)
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=30)
    worker = a_worker(core, bot)
    worker.run_once()
    with core.store.transaction() as session:
        outbox.notify_person(session, "alice", "your job finished", now=clock.now())

    assert worker.run_once() == 1

    assert [m.text for m in fake_slack.messages_in(ALICE)] == ["your job finished"]
    assert fake_slack.messages_in(CHANNEL) == []


def test_after_a_server_outage_everything_arrives_once_within_15_seconds(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    four_cards_and_ten_notices(core)
    worker = a_worker(core, bot)
    fake_slack.fail_every_call(status=500)
    for n in (1, 2, 3):  # decided during the outage: each card's update queues behind it
        assert core.service.handle_text("bob", f"/aml approve {n}").ok
    for _ in range(60):
        worker.run_once()
        clock.advance(POLL)
    tried_during_outage = len(fake_slack.calls())

    fake_slack.clear_failures()
    recovered_at = clock.now()
    last_sent = run_until_sent(worker, clock, core, limit=timedelta(minutes=2))

    assert last_sent - recovered_at <= RECOVERY_BOUND
    texts = [m.all_text for m in fake_slack.messages_in(CHANNEL) if m.thread_ts is None]
    assert len(texts) == 4 + 10  # four cards, ten notices: none twice
    assert sum("done" in text or "approved" in text.lower() for text in texts) == 3
    # One message at a time probed the failing Slack: not 16 messages every few seconds.
    assert tried_during_outage <= 20
    assert max(r.attempts for r in rows(core)) < 20


def test_a_rate_limited_then_failing_slack_costs_only_the_failed_attempts(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    channel_notices(core, 20)
    worker = a_worker(core, bot)
    fake_slack.fail_every_call(status=429, retry_after=5)
    for _ in range(30):
        worker.run_once()
        clock.advance(POLL)
    assert all(r.attempts == 0 for r in rows(core))
    fake_slack.fail_every_call(status=500)
    for _ in range(30):
        worker.run_once()
        clock.advance(POLL)

    fake_slack.clear_failures()
    recovered_at = clock.now()
    last_sent = run_until_sent(worker, clock, core, limit=timedelta(minutes=2))

    assert last_sent - recovered_at <= RECOVERY_BOUND
    assert [m.text for m in fake_slack.messages_in(CHANNEL)] == [f"notice {n}" for n in range(20)]


def test_an_outage_longer_than_every_attempt_dead_letters_nothing(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    """Twenty attempts at the capped backoff last about two and a half minutes: charged to
    the message probing the outage, they dead-lettered it three minutes into any longer
    one, and then the next oldest, one message every few minutes."""
    four_cards_and_ten_notices(core)
    worker = a_worker(core, bot)
    fake_slack.fail_every_call(status=503)
    for _ in range(int(timedelta(minutes=8) / POLL)):
        worker.run_once()
        clock.advance(POLL)
    assert [r.id for r in rows(core) if r.status != "pending"] == []
    assert max(r.attempts for r in rows(core)) <= 1  # only the outage's first failure

    fake_slack.clear_failures()
    recovered_at = clock.now()
    last_sent = run_until_sent(worker, clock, core, limit=timedelta(minutes=2))

    assert last_sent - recovered_at <= RECOVERY_BOUND
    assert {r.status for r in rows(core)} == {"sent"}
    texts = [m.all_text for m in fake_slack.messages_in(CHANNEL) if m.thread_ts is None]
    assert len(texts) == 4 + 10


def test_a_message_slack_keeps_failing_on_is_dead_lettered_and_the_others_flow(
    core: Core,
    clock: ManualClock,
    fake_slack: FakeSlack,
    bot: SlackBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One message Slack answers 500 for, while everything else gets through: its failures
    are its own (each the first in a row, as the others' calls succeed between its tries,
    which go after theirs), so it runs out of attempts, and it never holds the others back
    for longer than its one pause."""
    with core.store.transaction() as session:
        outbox.enqueue(
            session,
            outbox.CHANNEL_NOTICE,
            {"workspace": "demo", "text": "the poisoned notice"},
            now=core.clock.now(),
        )
    fake_slack.fail_messages_containing("poisoned")
    worker = a_worker(core, bot, max_attempts=3)
    with caplog.at_level(logging.ERROR, logger="bot.outbox_worker"):
        for n in range(60):  # a busy bot: something else to say every second
            with core.store.transaction() as session:
                outbox.enqueue(
                    session,
                    outbox.CHANNEL_NOTICE,
                    {"workspace": "demo", "text": f"notice {n}"},
                    now=core.clock.now(),
                )
            worker.run_once()
            clock.advance(POLL)
            if rows(core)[0].status != "pending":
                break

    dead = rows(core)[0]
    assert dead.status == "dead" and dead.attempts == 3, (dead.status, dead.attempts)
    assert "gave up after 3 attempts" in (dead.last_error or "")
    assert any("dead-lettered" in r.getMessage() for r in caplog.records)
    (report,) = [r for r in rows(core) if r.kind == outbox.PERSON_NOTICE]
    assert report.payload["person"] == "bob"

    run_until_sent(worker, clock, core, limit=timedelta(seconds=30))
    sent = [m.text for m in fake_slack.messages_in(CHANNEL)]
    assert sent == [f"notice {k}" for k in range(n + 1)]  # all of them, once, in order
    assert max(r.sent_at - r.created_at for r in rows(core) if r.sent_at) <= 2 * POLL
    (told,) = fake_slack.messages_in(BOB)
    assert "could not deliver" in told.all_text and "dead-lettered" in told.all_text


def test_a_lone_message_failing_is_kept_trying_as_an_outage_would_be(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    """Alone, a message Slack keeps failing on looks exactly like an outage: it is tried
    again every few seconds and not dead-lettered, until another message gets through."""
    channel_notices(core, 1)
    worker = a_worker(core, bot, max_attempts=3)
    fake_slack.fail_every_call(status=500)
    for _ in range(120):
        worker.run_once()
        clock.advance(POLL)
    (waiting,) = rows(core)
    assert waiting.status == "pending" and waiting.attempts == 1
    with core.store.transaction() as session:
        (pause,) = session.scalars(select(DeliveryPauseRow))
    assert 12 <= pause.failures <= 30  # tried every few seconds, every 10 s at most

    fake_slack.clear_failures()
    run_until_sent(worker, clock, core, limit=RECOVERY_BOUND)
    assert [m.text for m in fake_slack.messages_in(CHANNEL)] == ["notice 0"]


def test_a_delivery_slower_than_its_claim_is_not_taken_over_and_posted_twice(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    """Slack takes longer to answer a post than the claim lasts (a delivery is several
    calls, each up to the client's timeout): the worker renews its claim while it delivers,
    so another replica does not take the row over, find the step attempted but not yet
    shown, and post it a second time."""
    channel_notices(core, 1)
    asked, slack_answers = fake_slack.hold_answers("chat.postMessage")
    claim = timedelta(seconds=0.9)  # renewed every 0.3 s
    first = OutboxWorker(core.store, bot.deliverer, core.clock, core.config, claim_for=claim)
    delivering = threading.Thread(target=first.run_once)
    delivering.start()
    assert asked.wait(5), "the notice was not posted"
    for _ in range(50):  # nearly three claims go by, as time does: a step at a time
        time.sleep(0.05)
        clock.advance(timedelta(seconds=0.05))
    second = another_replica(core, bot, fake_slack)
    second.claim_for = claim
    assert second.run_once() == 0  # the row is still the first worker's
    slack_answers.set()
    delivering.join(10)

    assert [m.text for m in fake_slack.messages_in(CHANNEL)] == ["notice 0"]
    (sent,) = rows(core)
    assert sent.status == "sent" and sent.claimed_by == first.worker_id


def test_a_worker_whose_claim_was_taken_over_leaves_the_outcome_to_the_new_holder(
    core: Core, clock: ManualClock, fake_slack: FakeSlack, bot: SlackBot
) -> None:
    """A worker paused past its claim (a long GC, a frozen VM) comes back after another
    took the row over: its late outcome must not overwrite the new holder's."""
    channel_notices(core, 1)
    stale = a_worker(core, bot)
    (row,) = rows(core)
    assert outbox.claim(core.store, row.id, stale.worker_id, clock.now(), timedelta(seconds=30))
    clock.advance(timedelta(seconds=31))
    assert another_replica(core, bot, fake_slack).run_once() == 1  # took it over, sent it

    assert not outbox.give_up(
        core.store, row.id, dead=True, reason="late", now=clock.now(), holder=stale.worker_id
    )
    assert not outbox.reschedule(core.store, row.id, 3, clock.now(), "late", holder=stale.worker_id)
    (sent,) = rows(core)
    assert sent.status == "sent" and sent.attempts == 1 and sent.last_error is None
