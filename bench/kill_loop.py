"""Nothing accepted is lost or stranded, measured the way it breaks.

    python bench/kill_loop.py                 # 50 kill rounds, a rolling deploy, two replicas
    python bench/kill_loop.py --rounds 10     # fewer kill rounds
    python bench/kill_loop.py --held-posts 0  # no kills inside Slack's answer to a post
    python bench/kill_loop.py --at-once 0     # no kills inside commands run at once

Needs PostgreSQL (AMLBOT_TEST_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test).
Each kill round: one data scientist asks for access, a datastore and a job; the lead approves
all three while every simulated Azure call takes --latency seconds; `amlbot serve` (edge and
worker) is killed with SIGKILL at a random moment (every third round only its worker), a new
one is started, and the round checks per request: one terminal state, one effect in the
workspace, a grant row for every role assignment, one outcome message in the card's
thread. Then --at-once rounds kill the server while commands that policy runs at once are
handled (a job from a scientist holding a grant, a datastore the lead registers): handled
again after the restart, each must open one request.
Prints counts and recovery times; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.chaos import (  # noqa: E402 - after the path is set
    BOT_TOKEN,
    CHANNEL,
    LEAD,
    ServedBot,
    engine_for,
    held_post_round,
    kill_round,
    people,
    rolling_deploy,
    run_now_round,
    write_config,
)
from tests.fakes.slack_api import FakeSlack  # noqa: E402


def fresh_schema() -> str:
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from ack_servers import fresh_postgres_schema

    return str(fresh_postgres_schema())


def drop_schema(url: str) -> None:
    from ack_servers import drop_postgres_schema

    drop_postgres_schema(url)


def kill_loop(rounds: int, held_posts: int, at_once: int, latency: float, seed: int) -> None:
    scientists = people(rounds + held_posts)
    users = {user_id: f"{name}@example.com" for user_id, name in scientists.items()}
    users[LEAD] = "lead@example.com"
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="amlbot-kill-"))
    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=users) as slack:
        url = fresh_schema()
        bot = ServedBot(url, write_config(folder / "c.yml", scientists), slack, latency)
        bot.start()
        engine = engine_for(url)
        recoveries: list[float] = []
        mid_flight = 0
        problems: list[str] = []
        kinds: Counter[str] = Counter()
        try:
            for n, (user_id, name) in enumerate(list(scientists.items())[:rounds]):
                worker_only = n % 3 == 2
                kinds["worker only" if worker_only else "whole server"] += 1
                result = kill_round(bot, engine, user_id, name, n, rng, worker_only=worker_only)
                recoveries.append(result.recovered_in)
                mid_flight += result.in_flight_at_kill
                problems += [f"round {n}: {p}" for p in result.problems]
                print(
                    f"round {n:>2} ({'worker' if worker_only else 'server'} killed): "
                    f"{result.in_flight_at_kill} of {result.requests} requests in flight at the "
                    f"kill, all ended {result.recovered_in:5.1f} s after it, "
                    f"{len(result.problems)} problems",
                    flush=True,
                )
            held = list(scientists.items())[rounds:]
            held_doubled = 0
            for n, (user_id, name) in enumerate(held):
                result = held_post_round(bot, engine, user_id, name)
                held_doubled += sum(
                    "shows" in p or "outcome messages" in p for p in result.problems
                )
                problems += [f"held post {n}: {p}" for p in result.problems]
                print(
                    f"held post {n:>2}: server killed while Slack held a post's answer; "
                    f"sent once {result.recovered_in:5.1f} s after the kill, "
                    f"{len(result.problems)} problems",
                    flush=True,
                )
            # Round 0's scientist holds a grant: their jobs run at once.
            holder = next(iter(scientists))
            commands = opened = 0
            for n in range(at_once if rounds else 0):
                result = run_now_round(bot, engine, holder, 1000 + n, rng)
                commands += 2
                opened += result.requests
                problems += [f"at once {n}: {p}" for p in result.problems]
                print(
                    f"at once {n:>2}: server killed while 2 commands run at once were handled "
                    f"({result.in_flight_at_kill} not yet done); {result.requests} requests "
                    f"opened, all ended {result.recovered_in:5.1f} s after the kill, "
                    f"{len(result.problems)} problems",
                    flush=True,
                )
        finally:
            bot.kill_all()
            engine.dispose()
            drop_schema(url)
    if at_once and rounds:
        print(
            f"\ncommands run at once: {at_once} kills, {commands} commands opened {opened} "
            f"requests (one each is right)"
        )
    if held_posts:
        print(
            f"\nheld posts: {held_posts} kills while Slack held a post's answer, "
            f"{held_doubled} posts doubled or missing"
        )
    print(
        f"\nkill loop: {rounds} rounds ({dict(kinds)}), {3 * rounds} approved requests, "
        f"{mid_flight} of them in flight when the kill landed; {len(problems)} broken promises"
    )
    print(
        f"time from the kill to the last request ending: median "
        f"{statistics.median(recoveries):.1f} s, max {max(recoveries):.1f} s"
    )
    for problem in problems:
        print("  ", problem)


def deploy_while_busy(commands: int) -> None:
    scientists = people(4)
    users = {user_id: f"{name}@example.com" for user_id, name in scientists.items()}
    folder = Path(tempfile.mkdtemp(prefix="amlbot-deploy-"))
    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=users) as slack:
        url = fresh_schema()
        config = write_config(folder / "c.yml", scientists)
        # The old one drains 1 s after SIGTERM (takes requests, not ready), as a deploy does.
        old = ServedBot(url, config, slack, 0.2, drain_seconds=1.0)
        new = ServedBot(url, config, slack, 0.2, drain_seconds=1.0)
        old.start()
        new.start()
        try:
            sent, answered = rolling_deploy(old, new, list(scientists), commands)
        finally:
            new.kill_all()  # the old one exited on its SIGTERM
            drop_schema(url)
    lost = sum(1 for u in sent if answered[u] == 0)
    doubled = sum(1 for u in sent if answered[u] > 1)
    print(
        f"\nrolling deploy: {len(sent)} commands, SIGTERM to the old server mid-burst: "
        f"{len(sent) - lost - doubled} answered once, {lost} lost, {doubled} doubled; "
        f"old server exit code {old.process.returncode if old.process else '?'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument(
        "--held-posts",
        type=int,
        default=5,
        help="rounds that kill the server while the fake Slack holds the answer to a post",
    )
    parser.add_argument(
        "--at-once",
        type=int,
        default=10,
        help="rounds that kill the server while commands policy runs at once are handled",
    )
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    kill_loop(options.rounds, options.held_posts, options.at_once, options.latency, options.seed)
    deploy_while_busy(options.commands)
    return 0


if __name__ == "__main__":
    sys.exit(main())
