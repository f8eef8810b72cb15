"""What amlbot acknowledged, it keeps: `amlbot serve` (the edge and its worker, one session)
is killed with SIGKILL in the middle of a burst of slash commands, on either store, and the
next server answers every command the first one acknowledged. A command whose connection
the kill cut was never acknowledged (Slack would send it again): it is answered or not.

Answered at least once, not exactly once: a worker killed after posting a command's answer
to its `response_url` and before marking the item done leaves it to be handled again, and a
`response_url` cannot be asked whether the first post arrived. So an answer may come twice
(the same answer: handlers are idempotent, and a command that opens a request answers with
the one it opened the first time), never three times, never none.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.chaos import (
    BOT_TOKEN,
    CHANNEL,
    LEAD,
    SIGNING_SECRET,
    ServedBot,
    engine_for,
    people,
    unsettled_inbox,
    wait,
    write_config,
)
from tests.conftest import postgres_schema_url
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import post_signed, slash_command_body

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)"),
    pytest.mark.timeout(600),
]

SCIENTISTS = people(6)
COMMANDS = 80


def databases(store: str, tmp_path: Path) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{tmp_path / 'amlbot.sqlite3'}"
    else:
        yield from postgres_schema_url()  # skips (or fails under CI) without PostgreSQL


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_every_command_acknowledged_before_a_kill_is_answered_by_the_next_server(
    store: str, tmp_path: Path
) -> None:
    users = {user_id: f"{name}@example.com" for user_id, name in SCIENTISTS.items()}
    users[LEAD] = "lead@example.com"
    people_ids = list(SCIENTISTS)
    for database in databases(store, tmp_path):
        with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=users) as slack:
            config = write_config(tmp_path / "chaos.yml", SCIENTISTS)
            first = ServedBot(database, config, slack, latency=0.0)
            second = ServedBot(database, config, slack, latency=0.0)
            first.start()
            try:
                outcomes = _burst_killed_midway(first, slack, people_ids)
                second.start()
                acked = [url for url, outcome in outcomes.items() if outcome == "acked"]
                assert acked, "the kill came before any ack: the burst proves nothing"
                _wait_until_every_kept_command_is_handled(database, second)
                replies = Counter(post.url for post in slack.response_posts())
                assert [url for url in acked if replies[url] == 0] == []  # none lost
                assert {url: n for url, n in replies.items() if n > 2} == {}
                assert set(replies) <= set(outcomes)
            finally:
                for bot in (first, second):
                    if bot.process is not None and bot.process.poll() is None:
                        bot.kill_all()


def _wait_until_every_kept_command_is_handled(database: str, bot: ServedBot) -> None:
    engine = engine_for(database)
    try:
        wait(lambda: not unsettled_inbox(engine), timeout=120, what=f"the inbox:\n{bot.log()}")
    finally:
        engine.dispose()


def _burst_killed_midway(bot: ServedBot, slack: FakeSlack, people_ids: list[str]) -> dict[str, str]:
    """`COMMANDS` `/aml help`, ten in flight, and SIGKILL to the server and its worker once
    a random number of them have been acknowledged. Per response_url: "acked", "cut"
    (no answer: the connection died with the server) or what else the server answered."""
    kill_after = random.randint(10, COMMANDS // 2)
    outcomes: dict[str, str] = {}
    acks = threading.Semaphore(0)
    lock = threading.Lock()

    def send(n: int) -> None:
        user = people_ids[n % len(people_ids)]
        reply_to = slack.response_url(CHANNEL, user)
        body = slash_command_body("help", user_id=user, channel_id=CHANNEL, response_url=reply_to)
        try:
            answer = post_signed(bot.url, "/slack/events", body, secret=SIGNING_SECRET, timeout=5)
            outcome = "acked" if (answer.status, answer.body) == (200, "") else answer.body
        except OSError:
            outcome = "cut"
        with lock:
            outcomes[reply_to] = outcome
        if outcome == "acked":
            acks.release()

    with ThreadPoolExecutor(10) as pool:
        for n in range(COMMANDS):
            pool.submit(send, n)
        for _ in range(kill_after):
            assert acks.acquire(timeout=60), f"no ack within 60 s:\n{bot.log()}"
        bot.kill_all()
    return outcomes
