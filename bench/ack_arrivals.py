"""Ack latency at a fixed arrival rate: commands arrive as people type them, whether or not
the last one was answered yet (an open loop), which is how Slack delivers them.

    python bench/ack_arrivals.py                          # SQLite, 20, 100 and 400 a second
    python bench/ack_arrivals.py --database postgres --rates 50 500

`ack_latency.py` keeps a fixed number of requests in flight and sends the next the moment
one is answered: at 10 or 50 in flight both servers run flat out, so its p99 follows each
server's CPU per command (amlbot's edge, its worker and the database against the bare
app's ack alone). Here the arrivals are Poisson at each rate and do not wait for each
other: a figure is the latency a command meets at that load, not the server's capacity.
Same servers, same fake Slack (`ack_servers.py` starts them), same signed requests
(`ack_latency.py`); rounds alternate which target goes first. Prints figures; asserts
nothing. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ack_latency import REQUEST_TIMEOUT_S, signed_request
from bench.ack_servers import (
    AMLBOT_FACTORY,
    drop_postgres_schema,
    start_child,
    target_environment,
    wait_until_healthy,
)
from bench.http_load import Client


@dataclass
class RateLevel:
    target: str
    rate: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    late_starts: int = 0  # arrivals this process sent over 5 ms after their time

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class ResponseUrls:
    """The fake Slack's minted response_urls, each handed out once (Slack takes at most 5
    posts on one; amlbot's workers answer every command)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.used = 0

    def next(self) -> str:
        if self.used >= len(self.urls):
            raise RuntimeError("ran out of minted response_urls; mint more")
        self.used += 1
        return self.urls[self.used - 1]


async def run_rate(
    url: str, level: RateLevel, seconds: float, response_urls: ResponseUrls, text: str, seed: int
) -> None:
    """Poisson arrivals at `level.rate` a second for `seconds`, each its own connection,
    signed before the level and sent by `http_load.py` (as `ack_latency.py` does)."""
    arrivals = random.Random(seed)
    due_times: list[float] = []
    offset = 0.0
    while True:
        offset += arrivals.expovariate(level.rate)
        if offset >= seconds:
            break
        due_times.append(offset)
    requests = [
        signed_request(url, text, index, response_urls.next(), False)
        for index in range(len(due_times))
    ]

    async def one(request: bytes, due: float) -> None:
        started = time.perf_counter()
        if started - due > 0.005:
            level.late_starts += 1
        try:
            ok = await Client(url, False, REQUEST_TIMEOUT_S).post(request) == 200
        except (OSError, TimeoutError):
            ok = False
        if ok:
            # From when it was due: a load generator running late must not hide latency.
            level.latencies_ms.append((time.perf_counter() - due) * 1000)
        else:
            level.errors += 1

    sending: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for request, offset in zip(requests, due_times, strict=True):
        due = start + offset
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sending.append(asyncio.create_task(one(request, due)))
    await asyncio.gather(*sending)


async def bench_target(
    target: str, options: argparse.Namespace, slack_url: str, response_urls: ResponseUrls
) -> list[RateLevel]:
    env, factory = target_environment(target, options, slack_url)
    server = await start_child(["--serve", target, "--factory", factory], env)
    url = f"http://127.0.0.1:{server.ready}/slack/events"
    levels = []
    try:
        await wait_until_healthy(f"http://127.0.0.1:{server.ready}/healthz", 120.0)
        warmup = RateLevel(target, 20)  # auth.test, lazy imports, the first connections
        await run_rate(url, warmup, 2.0, response_urls, options.text, seed=0)
        for rate in options.rates:
            level = RateLevel(target, rate)
            await run_rate(url, level, options.seconds, response_urls, options.text, seed=rate)
            levels.append(level)
            await asyncio.sleep(1.0)  # let amlbot's workers finish the level's replies
        return levels
    finally:
        await server.stop()
        if "AMLBOT_DATABASE_URL" in env and env["AMLBOT_DATABASE_URL"].startswith("postgres"):
            drop_postgres_schema(env["AMLBOT_DATABASE_URL"])


async def bench(options: argparse.Namespace) -> int:
    # Per round and target: the warm-up's 2 s at 20/s and each rate's arrivals, with room
    # for Poisson's spread.
    per_target = 60 + sum(rate * options.seconds * 1.2 + 50 for rate in options.rates)
    most = int(per_target * 2 * options.rounds)
    slack = await start_child(["--serve-fake-slack", "--mint", str(most)], {})
    slack_url, _, urls_json = slack.ready.partition(" ")
    response_urls = ResponseUrls(json.loads(urls_json))
    print(
        f"signed /aml {options.text!r} slash commands at Poisson arrival rates, "
        f"{options.seconds:g} s per rate, {options.rounds} rounds pooled; amlbot on "
        f"{options.database}; python {sys.version.split()[0]}\n"
    )
    pooled: dict[tuple[str, float], RateLevel] = {}
    try:
        for round_number in range(options.rounds):
            order = ["bare", "amlbot"] if round_number % 2 == 0 else ["amlbot", "bare"]
            for target in order:
                for level in await bench_target(target, options, slack_url, response_urls):
                    kept = pooled.setdefault((target, level.rate), RateLevel(target, level.rate))
                    kept.latencies_ms += level.latencies_ms
                    kept.errors += level.errors
                    kept.late_starts += level.late_starts
    finally:
        await slack.stop()
    print(
        f"{'target':<8} {'rate/s':>7} {'acks':>6} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'late sends':>10}"
    )
    for (target, rate), level in sorted(pooled.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(
            f"{target:<8} {rate:>7g} {len(level.latencies_ms):>6} {level.errors:>6} "
            f"{level.percentile(50):>8.1f} {level.percentile(99):>8.1f} "
            f"{max(level.latencies_ms, default=math.nan):>8.1f} {level.late_starts:>10}"
        )
    print("\np99 ratio amlbot/bare at each arrival rate:")
    for rate in options.rates:
        bare, amlbot = pooled.get(("bare", rate)), pooled.get(("amlbot", rate))
        if bare and amlbot:
            print(
                f"  {rate:>6g}/s: {amlbot.percentile(99) / bare.percentile(99):5.2f}x "
                f"(p50 {amlbot.percentile(50) - bare.percentile(50):+.1f} ms)"
            )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0, 100.0, 400.0])
    parser.add_argument("--seconds", type=float, default=10.0, help="of arrivals per rate")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--text", default="help", help="what follows /aml")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--work-processes", type=int, default=1)
    parser.add_argument("--factory", default=AMLBOT_FACTORY, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(bench(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
