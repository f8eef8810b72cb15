"""CPU per ack of the app alone: the bare Bolt app and amlbot's edge, driven in-process.

    python bench/ack_cpu.py                          # SQLite
    python bench/ack_cpu.py --database postgres      # the acks' writer on the event loop

`ack_latency.py` times acks over HTTP, where uvicorn's share of the CPU (about half an ack's)
is the same for both apps and the machine's noise moves every p99. Here each target runs in
a child process of its own that calls the ASGI app directly with signed slash commands, as
uvicorn would, `--concurrency` at a time, and prints the CPU its process spent (user and
system, the inbox write included) per ack: a figure that moves a few percent from run to
run, for finding what an ack costs and checking that a change made it cheaper. Rounds
alternate which target goes first. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench and tests.fakes

from bench.ack_servers import (
    AMLBOT_FACTORY,
    CHANNEL,
    REPO_ROOT,
    SIGNING_SECRET,
    USERS,
    bare_asgi_app,
    drop_postgres_schema,
    load_factory_app,
    target_environment,
)

TARGETS = ("bare", "amlbot")
WARMUP = 200  # the first requests pay for auth.test and lazy imports


def signed_request(index: int, reply_to: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The `index`th `/aml help` as Slack sends it: its body and its ASGI headers."""
    from tests.fakes.slack_signing import signed_headers, slash_command_body

    users = list(USERS)
    body = slash_command_body(
        "help", user_id=users[index % len(users)], channel_id=CHANNEL, response_url=reply_to
    )
    headers = {
        **signed_headers(body, SIGNING_SECRET),
        "content-type": "application/x-www-form-urlencoded",
        "content-length": str(len(body)),
        "host": "127.0.0.1",
    }
    return body.encode(), [
        (name.lower().encode(), value.encode()) for name, value in headers.items()
    ]


async def post(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One request through the ASGI app, as uvicorn hands it over: its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/slack/events",
        "raw_path": b"/slack/events",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 3000),
        "state": {},
    }
    delivered = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:  # the app asks only to learn of a disconnect, which never comes
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def measure(app: Any, requests: int, concurrency: int, reply_to: str) -> dict[str, float]:
    """Start the app's lifespan, warm up, then time `requests` acks, `concurrency` at once."""
    started, stopping = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        messages = [{"type": "lifespan.startup"}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await stopping.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()
            elif message["type"] == "lifespan.startup.failed":
                raise RuntimeError(message.get("message", "startup failed"))

        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    running = asyncio.create_task(lifespan())
    await started.wait()
    signed = [signed_request(i, reply_to) for i in range(WARMUP + requests)]
    refused: list[int] = []

    async def person(mine: Sequence[tuple[bytes, list[tuple[bytes, bytes]]]]) -> None:
        for body, headers in mine:
            status = await post(app, body, headers)
            if status != 200:
                refused.append(status)

    warm, timed = signed[:WARMUP], signed[WARMUP:]
    await asyncio.gather(*(person(warm[k::concurrency]) for k in range(concurrency)))
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(person(timed[k::concurrency]) for k in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stopping.set()
    await running
    if refused:
        raise RuntimeError(f"{len(refused)} requests were not acked 200: {sorted(set(refused))}")
    return {"cpu_us": cpu / requests * 1e6, "wall_us": wall / requests * 1e6}


def child(options: argparse.Namespace) -> int:
    """One target in this process: print its figures as one JSON line."""
    settings = argparse.Namespace(
        factory=AMLBOT_FACTORY, database=options.database, work_processes=0, stall=0
    )
    env, factory = target_environment(options.child, settings, options.slack_url)
    os.environ.update(env)
    try:
        app = load_factory_app(factory) if options.child == "amlbot" else bare_asgi_app()
        figures = asyncio.run(
            measure(app, options.requests, options.concurrency, options.reply_url)
        )
    finally:
        if options.child == "amlbot" and options.database == "postgres":
            drop_postgres_schema(env["AMLBOT_DATABASE_URL"])
    print(json.dumps(figures), flush=True)
    return 0


def run_child(
    target: str, options: argparse.Namespace, slack_url: str, reply_url: str
) -> dict[str, float]:
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            target,
            "--slack-url",
            slack_url,
            "--reply-url",
            reply_url,
            "--database",
            options.database,
            "--requests",
            str(options.requests),
            "--concurrency",
            str(options.concurrency),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{target} failed:\n{result.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main_process(options: argparse.Namespace) -> int:
    # On leaving the block Popen closes the fake's stdin, which ends it, and waits for it.
    with subprocess.Popen(
        [sys.executable, "bench/ack_servers.py", "--serve-fake-slack", "--mint", "1"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as slack:
        assert slack.stdout is not None
        _, slack_url, urls = slack.stdout.readline().split(" ", 2)
        reply_url = json.loads(urls)[0]  # acks only: nothing is ever posted to it here
        print(
            f"/aml help, {options.requests} acks at {options.concurrency} in flight per round, "
            f"in-process (no HTTP server); amlbot on {options.database}, no worker\n"
        )
        print("round  target   cpu us/ack  wall us/ack")
        runs: dict[str, list[float]] = {target: [] for target in TARGETS}
        for round_number in range(options.rounds):
            order = TARGETS if round_number % 2 == 0 else tuple(reversed(TARGETS))
            for target in order:
                figures = run_child(target, options, slack_url, reply_url)
                runs[target].append(figures["cpu_us"])
                print(
                    f"{round_number + 1:>5}  {target:<7} {figures['cpu_us']:>11.0f}"
                    f"  {figures['wall_us']:>11.0f}"
                )
    bare, amlbot = statistics.median(runs["bare"]), statistics.median(runs["amlbot"])
    print(
        f"\nmedian cpu us/ack: bare {bare:.0f}, amlbot {amlbot:.0f}; amlbot spends "
        f"{amlbot - bare:.0f} us more ({amlbot / bare:.2f}x)"
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=20000, help="acks timed per round")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--slack-url", help=argparse.SUPPRESS)
    parser.add_argument("--reply-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    return child(options) if options.child else main_process(options)


if __name__ == "__main__":
    sys.exit(main())
