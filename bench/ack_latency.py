"""Ack latency of signed `/aml` slash commands over HTTP, at fixed concurrency.

    python bench/ack_latency.py                    # the bare Bolt baseline only
    python bench/ack_latency.py --target amlbot    # baseline, then amlbot, and the p99 ratio

Each target runs in its own process on uvicorn at 127.0.0.1; a fake Slack Web API and the
response_urls the replies go to (`reply_catcher.py`) run in two more; this process only
signs requests and times them (`http_load.py`), so the server under test does not share a GIL
with the load. With `--target amlbot`, a reference runs too: `bare+reply`, the bare app
answering every command itself, from memory. Prints figures; asserts nothing. See
README.md.

This module holds the load (the signed commands, the ack and reply levels, one round of a
target) and the command line; the servers and how they are started are in
`ack_servers.py`, what a level measured and the tables in `ack_report.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench and tests.fakes

from bench.ack_report import (
    Level,
    ReplyLevel,
    print_cpu_split,
    print_levels,
    print_ratios,
    print_replies,
)
from bench.ack_servers import (
    AMLBOT_FACTORY,
    CHANNEL,
    SIGNING_SECRET,
    USERS,
    ChildUnavailable,
    drop_postgres_schema,
    start_child,
    start_idle_load,
    stop_idle_load,
    target_environment,
    wait_until_healthy,
)
from bench.http_load import Client, post_request
from bench.proc_stats import CpuSnapshot, cpu_snapshot, rss_of_tree

if TYPE_CHECKING:
    from bench.reply_catcher import ReplyCatcher

# What each target answers a command with: an ack only, or an ack and then the reply.
REPLYING_TARGETS = ("bare+reply", "amlbot")
TARGET_RATIO = 1.5  # issue 3: amlbot's p99 at most 1.5x the bare app's
REQUEST_TIMEOUT_S = 10.0


# ---- the load (this process) -----------------------------------------------------------


def signed_command(text: str, index: int, reply_to: str) -> tuple[str, dict[str, str]]:
    """The `index`th `/aml TEXT` of the load (users take turns), signed now as Slack signs:
    its body and headers."""
    from tests.fakes.slack_signing import signed_headers, slash_command_body

    users = list(USERS)
    body = slash_command_body(
        text, user_id=users[index % len(users)], channel_id=CHANNEL, response_url=reply_to
    )
    return body, signed_headers(body, SIGNING_SECRET)


def signed_request(url: str, text: str, index: int, reply_to: str, keep_alive: bool) -> bytes:
    """The `index`th command of the load as it goes on the wire, signed now."""
    body, headers = signed_command(text, index, reply_to)
    return post_request(url, body, headers, keep_alive)


async def run_level(
    url: str,
    level: Level,
    total: int,
    response_urls: list[str],
    text: str,
    keep_alive: bool,
    time_limit_s: float,
    catcher: ReplyCatcher | None = None,
    at_end: Callable[[], None] = lambda: None,
) -> None:
    """Send `total` commands, `level.concurrency` at a time; `at_end` is called once the last
    ack is in, before the replies are waited for. Every request is built and signed before
    the level starts (a level lasts seconds; Slack's signatures hold for five minutes), so
    the load spends its CPU during the level on sending and timing only."""
    run = f"{level.target}-{level.concurrency}-{time.monotonic_ns()}"
    tokens = [f"{run}-{index}" for index in range(total)]
    requests = [
        signed_request(
            url,
            text,
            index,
            catcher.url(token)
            if catcher is not None
            else response_urls[index % len(response_urls)],
            keep_alive,
        )
        for index, token in enumerate(tokens)
    ]
    sent = 0
    deadline = time.monotonic() + time_limit_s

    async def one_client() -> None:
        nonlocal sent
        client = Client(url, keep_alive, REQUEST_TIMEOUT_S)
        while sent < total and time.monotonic() < deadline:
            index = sent
            sent += 1
            started = time.perf_counter()
            if catcher is not None:
                catcher.sent[tokens[index]] = time.monotonic()
            try:
                status = await client.post(requests[index])
            except (OSError, TimeoutError) as failure:
                name = type(failure).__name__
                level.errors[name] = level.errors.get(name, 0) + 1
                continue
            if status == 200:
                level.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                level.errors[f"HTTP {status}"] = level.errors.get(f"HTTP {status}", 0) + 1
        client.close()

    started_wall = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(level.concurrency)))
    level.wall_s = time.monotonic() - started_wall
    at_end()
    if catcher is not None:
        await catcher.collect(level, tokens[:sent])


async def run_reply_level(
    url: str, level: ReplyLevel, total: int, catcher: ReplyCatcher, time_limit_s: float
) -> None:
    sent = 0
    deadline = time.monotonic() + time_limit_s
    run = f"reply-{level.concurrency}-{time.monotonic_ns()}"

    async def one_person() -> None:
        nonlocal sent
        client = Client(url, False, REQUEST_TIMEOUT_S)
        while sent < total and time.monotonic() < deadline:
            index = sent
            sent += 1
            token = f"{run}-{index}"
            request = signed_request(url, level.text, index, catcher.url(token), False)
            started = catcher.sent[token] = time.monotonic()
            try:
                await client.post(request)
                arrived = await catcher.wait(token, REQUEST_TIMEOUT_S)
            except (OSError, TimeoutError):
                arrived = None
            if arrived is None:
                level.unanswered += 1
            else:
                level.replies_ms.append((arrived - started) * 1000)

    await asyncio.gather(*(one_person() for _ in range(level.concurrency)))


async def bench_target(
    target: str, options: argparse.Namespace, slack_url: str, response_urls: list[str]
) -> tuple[list[Level], list[ReplyLevel]]:
    """One round of one target: start its server, warm up, run every level, stop it."""
    env, factory = target_environment(target, options, slack_url)
    catcher: ReplyCatcher | None = None
    replies: list[ReplyLevel] = []
    # amlbot without `work` processes (the `web` edge alone) accepts and answers nothing;
    # with `--stall` its worker runs in the edge's process (`stalled_amlbot_app`).
    replies_expected = target in REPLYING_TARGETS and not (
        target == "amlbot" and options.work_processes == 0 and not options.stall
    )
    if replies_expected:
        from bench.reply_catcher import ReplyCatcher

        catcher = ReplyCatcher()
        await catcher.start()
    catcher_pid = catcher.pid if catcher is not None else None
    server = await start_child(["--serve", target, "--factory", factory], env)
    url = f"http://127.0.0.1:{server.ready}/slack/events"
    try:
        # Measure the running service, not its start: worker processes import and connect
        # after the socket opens, and /healthz answers 200 only once they are ready (as a
        # load balancer's readiness probe would wait for).
        await wait_until_healthy(f"http://127.0.0.1:{server.ready}/healthz", 120.0)
        # every request of a target gets its own response_url (Slack allows 5 posts on one)
        warmup = Level(target, 1)  # the first requests pay for auth.test and lazy imports
        await run_level(url, warmup, options.warmup, response_urls, options.text, False, 30)
        if catcher is not None:  # and until a worker answers (its process starts after ours)
            await run_reply_level(url, ReplyLevel(options.text, 1), 3, catcher, 60)
        levels = []
        offset = options.warmup
        for concurrency in options.concurrency:
            level = Level(target, concurrency)
            before = cpu_snapshot(server.process.pid, catcher_pid)
            acks_done: list[CpuSnapshot] = []

            def note_acks_done(done: list[CpuSnapshot] = acks_done) -> None:
                done.append(cpu_snapshot(server.process.pid, catcher_pid))

            await run_level(
                url,
                level,
                options.requests,
                response_urls[offset : offset + options.requests],
                options.text,
                options.keep_alive,
                options.time_limit,
                catcher,
                at_end=note_acks_done,
            )
            # While the acks were sent, for the table of who had the CPUs ...
            level.cpu_s = acks_done[0].spent_since(before)
            # ... and the workers until the replies were in (or given up on).
            level.work_cpu_s = cpu_snapshot(server.process.pid).spent_since(before)["workers"]
            offset += options.requests
            levels.append(level)
        if target == "amlbot" and catcher is not None:
            for text in options.reply_text:
                for concurrency in options.concurrency:
                    reply_level = ReplyLevel(text, concurrency)
                    await run_reply_level(
                        url, reply_level, options.replies, catcher, options.time_limit
                    )
                    replies.append(reply_level)
        if target == "amlbot" and options.memory_commands:
            pids = [server.process.pid]  # and its `amlbot work` children
            idle = sum(rss_of_tree(pid) for pid in pids)
            flood = Level(target, 50)
            await run_level(
                url,
                flood,
                options.memory_commands,
                response_urls,
                options.text,
                options.keep_alive,
                600,
                catcher,
            )
            after_flood = sum(rss_of_tree(pid) for pid in pids)
            print(
                f"resident memory of the process tree: idle {idle / 2**20:.0f} MiB, after "
                f"{len(flood.latencies_ms)} more commands {after_flood / 2**20:.0f} MiB "
                f"({flood.unanswered} unanswered)"
            )
        return levels, replies
    finally:
        await server.stop()
        if catcher is not None:
            await catcher.stop()
        if options.database == "postgres" and target == "amlbot":
            drop_postgres_schema(env["AMLBOT_DATABASE_URL"])


async def bench(options: argparse.Namespace) -> int:
    targets = ["bare"]
    if options.target == "amlbot":
        targets += ["bare+reply", "amlbot"] if options.reference else ["amlbot"]
    per_target = options.warmup + options.requests * len(options.concurrency)
    minted = per_target * len(targets) * options.rounds
    slack = await start_child(["--serve-fake-slack", "--mint", str(minted)], {})
    slack_url, _, urls_json = slack.ready.partition(" ")
    response_urls: list[str] = json.loads(urls_json)
    if options.stall:
        print(f"amlbot's workspace backend stalls {options.stall:g} s on every call")
    if options.idle_load:
        print(f"beside every target: {options.idle_load} busy loops at SCHED_IDLE")
    print(
        f"signed /aml slash commands -> uvicorn on 127.0.0.1; {options.rounds} rounds of "
        f"{options.requests} acks per level (after {options.warmup} warm-up), pooled; "
        f"keep-alive {'on' if options.keep_alive else 'off'}; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    idle_load: list[asyncio.subprocess.Process] = []
    results: dict[str, list[Level]] = {}
    reply_results: list[ReplyLevel] = []
    try:
        idle_load = await start_idle_load(options.idle_load)
        for round_number in range(options.rounds):
            # Alternate which target goes first, so neither always runs on a warmer or a
            # busier machine; every round gets response_urls of its own.
            order = targets if round_number % 2 == 0 else list(reversed(targets))
            for target in order:
                first = (round_number * len(targets) + targets.index(target)) * per_target
                urls = response_urls[first : first + per_target]
                levels, replies = await bench_target(target, options, slack_url, urls)
                if target not in results:
                    results[target] = levels
                else:
                    for pooled, level in zip(results[target], levels, strict=True):
                        pooled.absorb(level)
                if not replies:
                    pass
                elif not reply_results:
                    reply_results.extend(replies)
                else:
                    for pooled_reply, reply in zip(reply_results, replies, strict=True):
                        pooled_reply.absorb(reply)
    except ChildUnavailable as unavailable:
        results.pop("amlbot", None)
        print(f"target not available yet: {unavailable}")
        print("(expects an importable zero-argument ASGI factory; see bench/README.md)\n")
    finally:
        await stop_idle_load(idle_load)
        await slack.stop()
    print_levels([level for levels in results.values() for level in levels])
    print_cpu_split([level for levels in results.values() for level in levels])
    if "amlbot" in results:
        print_ratios(results["bare"], results["amlbot"], TARGET_RATIO)
    if "amlbot" in results and "bare+reply" in results:
        print(
            "\nfor reference, against a bare app that answers every command itself, from "
            "memory (no inbox, no worker: a crash loses the answers), the same cores:"
        )
        print_ratios(results["bare+reply"], results["amlbot"], None)
    if reply_results:
        print_replies(reply_results)
    return 0 if set(results) == set(targets) else 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", choices=["bare", "amlbot"], default="bare")
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --target amlbot, run bare+reply too: the bare app answering every "
        "command itself (no inbox)",
    )
    parser.add_argument("--factory", default=AMLBOT_FACTORY, help="module:callable for amlbot")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--requests", type=int, default=5000, help="acks timed per level")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs of every target, alternating which goes first; the figures pool them",
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--text", default="help", help="what follows /aml")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per level")
    parser.add_argument("--keep-alive", action="store_true", help="reuse connections")
    parser.add_argument(
        "--stall",
        type=float,
        default=0.0,
        help="amlbot: every workspace backend call stalls this many seconds (try with "
        "--text 'compute list', which reaches the backend)",
    )
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="amlbot's store: SQLite or PostgreSQL; either way `amlbot work` children do "
        "the work, as `amlbot serve` runs them",
    )
    parser.add_argument("--work-processes", type=int, default=1)
    parser.add_argument(
        "--idle-load",
        type=int,
        default=0,
        help="run this many busy loops at SCHED_IDLE beside every target (a control: what "
        "idle-priority work on the same cores costs an app that only acks)",
    )
    parser.add_argument(
        "--reply-text",
        nargs="*",
        default=["help", "compute list"],
        help="amlbot: commands whose reply latency is measured after the ack levels",
    )
    parser.add_argument("--replies", type=int, default=200, help="replies timed per level")
    parser.add_argument(
        "--memory-commands",
        type=int,
        default=0,
        help="after the levels, print the resident memory of amlbot's processes idle and "
        "after this many more commands (e.g. 10000)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(bench(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
