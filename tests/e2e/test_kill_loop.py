"""Nothing accepted is lost or stranded: `amlbot serve` on PostgreSQL is killed with
SIGKILL while approved requests are being carried out (every simulated Azure call takes a
second), a new one is started, and each request still ends exactly once, with exactly one
effect in the workspace, a grant row for every role assignment and one outcome message.
The long version with figures is bench/kill_loop.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import (
    CHANNEL,
    LEAD,
    ServedBot,
    all_final,
    card_ts,
    check_promises,
    doubled_posts,
    engine_for,
    kill_round,
    outbox_drained,
    people,
    request_ids_from,
    revoke_round,
    wait,
    write_config,
)
from tests.conftest import postgres_schema_url
from tests.fakes.slack_api import FakeSlack

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)"),
    pytest.mark.timeout(600),
]

SCIENTISTS = people(6)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedBot]:
    users = {user_id: f"{name}@example.com" for user_id, name in SCIENTISTS.items()}
    users[LEAD] = "lead@example.com"
    for url in postgres_schema_url():
        with FakeSlack(token="xoxb-chaos", channels={CHANNEL}, users=users) as slack:
            config = write_config(tmp_path / "chaos.yml", SCIENTISTS)
            bot = ServedBot(url, config, slack, latency=1.0)
            bot.start()
            try:
                yield bot
            finally:
                bot.kill_all()


def test_killing_the_whole_server_mid_execution_strands_nothing(served: ServedBot) -> None:
    engine = engine_for(served.database_url)
    rng = random.Random(8)
    for n, (user_id, name) in enumerate(list(SCIENTISTS.items())[:2]):
        result = kill_round(served, engine, user_id, name, n, rng, worker_only=False)
        assert result.problems == []
    engine.dispose()


def test_killing_the_server_mid_revocation_still_takes_the_access_away(
    served: ServedBot,
) -> None:
    engine = engine_for(served.database_url)
    rng = random.Random(10)
    user_id, name = list(SCIENTISTS.items())[3]
    assert kill_round(served, engine, user_id, name, 3, rng, worker_only=False).problems == []
    assert revoke_round(served, engine, user_id, rng).problems == []
    engine.dispose()


def test_killing_the_worker_alone_strands_nothing(served: ServedBot) -> None:
    engine = engine_for(served.database_url)
    rng = random.Random(9)
    user_id, name = list(SCIENTISTS.items())[2]
    result = kill_round(served, engine, user_id, name, 2, rng, worker_only=True)
    assert result.problems == []
    engine.dispose()


def test_killing_the_server_while_slack_answers_a_post_does_not_post_it_twice(
    served: ServedBot,
) -> None:
    """The narrowest window: Slack has shown the message, the bot is killed before it hears
    so. The new process finds the message by its metadata instead of posting it again."""
    engine = engine_for(served.database_url)
    user_id, name = list(SCIENTISTS.items())[4]
    assert served.command(user_id, 'access request gpu-cluster --for 2h --reason "chaos"') == 200
    (request_id,) = wait(lambda: request_ids_from(engine, name, after=0), 90, "the request")
    ts = wait(lambda: card_ts(served.slack, request_id), 30, "its card")
    posts_before = len(served.slack.calls("chat.postMessage"))
    served.slack.lose_answer("chat.postMessage", delay=30, status=None)

    assert served.approve(request_id, ts) == 200
    wait(
        lambda: len(served.slack.calls("chat.postMessage")) > posts_before,
        90,
        "a post Slack holds the answer to",
    )
    served.kill_all()
    served.start()

    wait(lambda: all_final(engine, [request_id]), 120, f"#{request_id} to end")
    # The killed process's claim on the message lapses after 30 s; then it is retried.
    wait(lambda: outbox_drained(engine), 120, "every outbox message to be sent")
    assert check_promises(engine, served.slack, [request_id]) == []
    assert served.slack.calls("conversations.replies") or served.slack.calls(
        "conversations.history"
    ), "the post in doubt was looked up"
    assert doubled_posts(served.slack) == []
    engine.dispose()
