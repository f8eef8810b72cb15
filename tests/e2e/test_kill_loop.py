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
    ask_and_approve,
    engine_for,
    held_post_round,
    kill_round,
    people,
    revoke_round,
    run_now_round,
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


def test_a_command_handled_again_after_a_kill_opens_its_request_once(
    served: ServedBot,
) -> None:
    """The kill lands while a command policy runs at once is handled: after the restart
    the command is handled again, and finds the request (and job, datastore) it opened."""
    engine = engine_for(served.database_url)
    user_id, name = list(SCIENTISTS.items())[4]
    granted = ask_and_approve(served, engine, user_id, name, 4)
    wait(lambda: all_final(engine, granted), 120, "the grant of the round to be given")
    # One round: its kill lands inside the commands' workspace calls, and the restarted
    # server waits out their leases (30 s); bench/kill_loop.py runs ten.
    result = run_now_round(served, engine, user_id, 40, random.Random(12))
    assert result.problems == []
    assert result.in_flight_at_kill > 0, "the kill landed after both commands were done"
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
    """Slack has shown the message, the bot is killed before it hears so: the new process
    finds the message by its metadata instead of posting it again."""
    engine = engine_for(served.database_url)
    user_id, name = list(SCIENTISTS.items())[4]

    result = held_post_round(served, engine, user_id, name)

    assert result.problems == []  # one outcome message, no outbox post shown twice
    assert served.slack.calls("conversations.replies") or served.slack.calls(
        "conversations.history"
    ), "the post in doubt was looked up"
    engine.dispose()
