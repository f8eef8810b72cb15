"""Two `amlbot serve` on one PostgreSQL: duplicate deliveries sent to both act once and are
answered once; and a rolling deploy (SIGTERM to the old one during a burst, the new one
taking the rest, as a load balancer would send it) loses and doubles no reply."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.chaos import (
    BOT_TOKEN,
    CHANNEL,
    LEAD,
    SIGNING_SECRET,
    ServedBot,
    card_ts,
    engine_for,
    people,
    rolling_deploy,
    wait,
    write_config,
)
from tests.conftest import postgres_schema_url
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import (
    block_actions_payload,
    interactive_body,
    post_signed,
    slash_command_body,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

SCIENTISTS = people(4)


@pytest.fixture
def two_bots(tmp_path: Path) -> Iterator[tuple[ServedBot, ServedBot]]:
    users = {user_id: f"{name}@example.com" for user_id, name in SCIENTISTS.items()}
    users[LEAD] = "lead@example.com"
    for url in postgres_schema_url():
        with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=users) as slack:
            config = write_config(tmp_path / "replicas.yml", SCIENTISTS)
            # Draining 1 s after SIGTERM, as a deploy does (the rolling deploy sends to it).
            bots = (
                ServedBot(url, config, slack, 0.2, drain_seconds=1.0),
                ServedBot(url, config, slack, 0.2, drain_seconds=1.0),
            )
            for bot in bots:
                bot.start()
            try:
                yield bots
            finally:
                for bot in bots:
                    if bot.process is not None and bot.process.poll() is None:
                        bot.kill_all()


def test_duplicate_deliveries_to_two_replicas_act_once(
    two_bots: tuple[ServedBot, ServedBot],
) -> None:
    first = two_bots[0]
    slack = first.slack
    user_id = next(iter(SCIENTISTS))
    command = slash_command_body(
        'access request gpu-cluster --for 1h --reason "two replicas"',
        user_id=user_id,
        channel_id=CHANNEL,
        response_url=slack.response_url(CHANNEL, user_id),
        trigger_id="111.222.replicas",
    )
    for bot in two_bots:  # a proxy delivering the same command to both
        assert post_signed(bot.url, "/slack/events", command, secret=SIGNING_SECRET).status == 200
    ts = wait(lambda: card_ts(slack, 1), 30, "the card")
    click = interactive_body(
        block_actions_payload(
            action_id="amlbot.approve",
            user_id=LEAD,
            value="1",
            block_id="decision",
            channel_id=CHANNEL,
            message_ts=ts,
            response_url=slack.response_url(CHANNEL, LEAD, message_ts=ts),
            trigger_id="333.444.replicas",
        )
    )
    threads = [
        threading.Thread(
            target=post_signed,
            args=(bot.url, "/slack/events", click),
            kwargs={"secret": SIGNING_SECRET},
        )
        for bot in two_bots
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine = engine_for(first.database_url)

    def succeeded() -> bool:
        with engine.connect() as connection:
            status = connection.scalar(text("SELECT status FROM requests WHERE id = 1"))
        return bool(status == "succeeded")

    wait(succeeded, 60, "the request to succeed")
    time.sleep(2)  # anything doubled would arrive by now
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM requests")) == 1
        assert connection.scalar(text("SELECT count(*) FROM sim_role_assignments")) == 1
        assert connection.scalar(text("SELECT count(*) FROM grants")) == 1
    engine.dispose()
    answers = Counter(post.user for post in slack.response_posts())
    assert answers == {user_id: 1, LEAD: 1}
    cards = [m for m in slack.messages_in(CHANNEL) if m.thread_ts is None and "#1 " in m.text]
    assert len(cards) == 1


def test_a_rolling_deploy_loses_and_doubles_no_reply(
    two_bots: tuple[ServedBot, ServedBot],
) -> None:
    old, new = two_bots
    sent, answered = rolling_deploy(old, new, list(SCIENTISTS), 200)
    assert len(sent) == 200
    times = Counter(answered[url] for url in sent)
    assert times == {1: 200}, (
        f"commands by how often each was answered: {dict(times)}\n"
        f"old server's log:\n{old.log()}\nnew server's log:\n{new.log()}"
    )
    assert old.process is not None and old.process.returncode == 0
