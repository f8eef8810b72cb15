"""Ack latency of signed `/aml` slash commands over HTTP, at fixed concurrency.

    python bench/ack_latency.py                    # the bare Bolt baseline only
    python bench/ack_latency.py --target amlbot    # baseline, then amlbot, and the p99 ratio

Each target runs in its own process on uvicorn at 127.0.0.1; a fake Slack Web API and the
response_urls the replies go to (`reply_catcher.py`) run in two more; this process only
signs requests and times them (aiohttp), so the server under test does not share a GIL
with the load. With `--target amlbot`, a reference runs too: `bare+reply`, the bare app
answering every command itself, from memory. Prints figures; asserts nothing. See
README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.reply_catcher import ReplyCatcher

REPO_ROOT = Path(__file__).resolve().parents[1]
SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
CHANNEL = "C0DEMO0001"
USERS = {
    "U0ALICE01": "alice@example.com",
    "U0BOB0001": "bob@example.com",
    "U0CAROL01": "carol@example.com",
}
AMLBOT_FACTORY = "bot.serve:create_asgi_app"
STALLED_FACTORY = "bench.ack_latency:stalled_amlbot_app"
# What each target answers a command with: an ack only, or an ack and then the reply.
REPLYING_TARGETS = ("bare+reply", "amlbot")
TARGET_RATIO = 1.5  # issue 3: amlbot's p99 at most 1.5x the bare app's
TARGET_REPLY_P99_MS = 100.0  # issue 8: at 10 people
STARTUP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0


# ---- the servers under test (run in child processes) -----------------------------------


def bare_asgi_app(replying: bool = False) -> Any:
    """The baseline: AsyncApp + process_before_response, a `/aml` listener that only acks,
    behind the same Starlette adapter the real app uses.

    `replying` (the `bare+reply` reference): the listener also answers every command with
    amlbot's help text through Bolt's `respond`, as a task on the same event loop once it has
    acked: the same answers amlbot gives, from one process, kept nowhere (a crash loses
    them). Not `process_before_response=False`, whose ack waits on a 10 ms poll in Bolt."""
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
    from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
    from slack_sdk.web.async_client import AsyncWebClient
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    # Popped: AsyncApp reads SLACK_BOT_TOKEN itself and warns that `client` overrides it.
    token = os.environ.pop("SLACK_BOT_TOKEN")
    app = AsyncApp(
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        client=AsyncWebClient(token=token, base_url=os.environ["SLACK_API_URL"]),
        process_before_response=True,
    )

    answering: set[asyncio.Task[Any]] = set()

    async def answer(respond: AsyncRespond) -> None:
        from commands.help import help_text

        await respond(text=help_text(), response_type="ephemeral", replace_original=False)

    @app.command("/aml")
    async def aml(ack: AsyncAck, respond: AsyncRespond) -> None:
        await ack()
        if replying:  # kept until done: the loop holds tasks only weakly
            task = asyncio.get_running_loop().create_task(answer(respond))
            answering.add(task)
            task.add_done_callback(answering.discard)

    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


class StalledBackend:
    """A workspace backend whose every call first stalls for `seconds` (a hung Azure)."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def stalled(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self._seconds)
            return attribute(*args, **kwargs)

        return stalled


def stalled_amlbot_app() -> Any:
    """amlbot (`--factory` default) with every workspace backend stalling for
    AMLBOT_BENCH_STALL_S seconds per call: `--stall S` serves this."""
    from bot.serve import create_asgi_app

    seconds = float(os.environ["AMLBOT_BENCH_STALL_S"])

    def stall_every_backend(core: Any) -> None:
        for workspace in core.config.workspaces:
            core.backends.install(workspace, StalledBackend(core.backends(workspace), seconds))

    return create_asgi_app(prepare=stall_every_backend)


def load_factory_app(factory: str) -> Any:
    """`module:callable`, called with no arguments; it reads SLACK_SIGNING_SECRET,
    SLACK_BOT_TOKEN and SLACK_API_URL (and its own settings) from the environment, as
    `amlbot serve --http` does."""
    module_name, _, attribute = factory.partition(":")
    create = getattr(importlib.import_module(module_name), attribute)
    return create()


def serve(target: str, factory: str) -> int:
    try:
        app = (
            load_factory_app(factory)
            if target == "amlbot"
            else bare_asgi_app(replying=target == "bare+reply")
        )
    except (ImportError, AttributeError) as missing:
        print(f"UNAVAILABLE {factory}: {type(missing).__name__}: {missing}", flush=True)
        return 3
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    print(f"READY {listener.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="auto")
    # uvicorn shuts down on SIGTERM, then raises it again; as SystemExit (as `amlbot serve`
    # does) the interpreter's exit handlers still run and release amlbot's worker processes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def serve_fake_slack(mint: int) -> int:
    """The fake Slack Web API, with `mint` response_urls for the load to use."""
    from tests.fakes.slack_api import FakeSlack

    # The fake stands in for Slack's servers, which do not share the bot's CPUs: it yields
    # to the server under test, so the figures measure the bot, not the fake.
    with contextlib.suppress(OSError):
        os.nice(19)
    users = list(USERS)
    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack:
        urls = [slack.response_url(CHANNEL, users[i % len(users)]) for i in range(mint)]
        print(f"READY {slack.base_url} {json.dumps(urls)}", flush=True)
        sys.stdin.read()  # until the parent closes our stdin or ends us
    return 0


# ---- the load (this process) -----------------------------------------------------------


@dataclass
class Child:
    process: asyncio.subprocess.Process
    ready: str
    drain: asyncio.Task[None]

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                # amlbot's workers finish the calls they are in before they exit
                await asyncio.wait_for(self.process.wait(), timeout=30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.drain.cancel()


async def wait_until_healthy(url: str, limit: float) -> None:
    """Poll a health endpoint until it answers 200; a missing one (404) counts as ready."""
    import aiohttp

    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status in (200, 404):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy within {limit:.0f} s")


async def start_child(
    args: Sequence[str], env: dict[str, str], *, script: Path | None = None
) -> Child:
    """Run `script` (this file by default) with `args`, once it prints its READY line."""
    python_path = [
        str(REPO_ROOT),
        *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
    ]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script or Path(__file__).resolve()),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(python_path)},
        cwd=str(REPO_ROOT),
        # The fake Slack's READY line lists every minted response_url (~100 bytes each).
        limit=64 * 1024 * 1024,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=STARTUP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"{' '.join(args)} did not start in {STARTUP_TIMEOUT_S:.0f} s") from None
    text = line.decode().strip()
    if not text.startswith("READY "):
        await process.wait()
        raise ChildUnavailable(text or f"{' '.join(args)} exited with {process.returncode}")
    stdout = process.stdout

    async def drain() -> None:  # keep the pipe from filling up
        while await stdout.readline():
            pass

    return Child(process, text.removeprefix("READY "), asyncio.create_task(drain()))


class ChildUnavailable(Exception):
    pass


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far, in nanosecond resolution (schedstat), so a
    level of a few hundred requests is measured, not rounded to 10 ms ticks; 0 off Linux."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    return total / 1e9


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (amlbot's worker processes)."""
    children = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                # the command name may hold spaces: the fields after its ")" are fixed
                fields = f.read().rpartition(")")[2].split()
                if int(fields[1]) == pid:
                    children.append(int(entry))
    return children


def cpu_snapshot(pid: int) -> tuple[float, float]:
    """CPU seconds so far of the server under test: its acking process, and the processes
    it started (amlbot's workers, which do the work behind each ack)."""
    return cpu_seconds(pid), sum(cpu_seconds(child) for child in child_pids(pid))


@dataclass
class Level:
    target: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    work_cpu_s: float = 0.0
    # Slash command sent -> its reply received at response_url (amlbot only).
    replies_ms: list[float] = field(default_factory=list)
    unanswered: int = 0

    def absorb(self, other: Level) -> None:
        """Pool another round of the same target and concurrency into this one."""
        self.latencies_ms += other.latencies_ms
        self.replies_ms += other.replies_ms
        self.unanswered += other.unanswered
        for name, times in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + times
        self.wall_s += other.wall_s
        self.server_cpu_s += other.server_cpu_s
        self.work_cpu_s += other.work_cpu_s

    def percentile(self, p: float, of: list[float] | None = None) -> float:
        ordered = sorted(self.latencies_ms if of is None else of)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def over(self, seconds: float) -> int:
        return sum(1 for ms in self.latencies_ms if ms > seconds * 1000)


def rss_of_tree(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
        stack += child_pids(current)
    return total


def signed_command(text: str, index: int, reply_to: str) -> tuple[str, dict[str, str]]:
    """The `index`th `/aml TEXT` of the load (users take turns), signed now as Slack signs:
    its body and headers."""
    from tests.fakes.slack_signing import signed_headers, slash_command_body

    users = list(USERS)
    body = slash_command_body(
        text, user_id=users[index % len(users)], channel_id=CHANNEL, response_url=reply_to
    )
    return body, signed_headers(body, SIGNING_SECRET)


async def run_level(
    url: str,
    level: Level,
    total: int,
    response_urls: list[str],
    text: str,
    keep_alive: bool,
    time_limit_s: float,
    catcher: ReplyCatcher | None = None,
) -> None:
    import aiohttp

    sent = 0
    deadline = time.monotonic() + time_limit_s
    connector = aiohttp.TCPConnector(limit=level.concurrency, force_close=not keep_alive)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one_client() -> None:
            nonlocal sent
            while sent < total and time.monotonic() < deadline:
                index = sent
                sent += 1
                token = f"{level.target}-{level.concurrency}-{index}-{time.monotonic_ns()}"
                reply_to = (
                    catcher.url(token)
                    if catcher is not None
                    else response_urls[index % len(response_urls)]
                )
                body, headers = signed_command(text, index, reply_to)
                started = time.perf_counter()
                if catcher is not None:
                    catcher.sent[token] = time.monotonic()
                    tokens.append(token)
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as failure:
                    name = type(failure).__name__
                    level.errors[name] = level.errors.get(name, 0) + 1
                    continue
                if status == 200:
                    level.latencies_ms.append((time.perf_counter() - started) * 1000)
                else:
                    level.errors[f"HTTP {status}"] = level.errors.get(f"HTTP {status}", 0) + 1

        tokens: list[str] = []
        started_wall = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(level.concurrency)))
        level.wall_s = time.monotonic() - started_wall
        if catcher is not None:
            await catcher.collect(level, tokens)


@dataclass
class ReplyLevel:
    """Replies as people feel them: each of `concurrency` people sends a command and the
    next one only once the last was answered (as a person does)."""

    text: str
    concurrency: int
    replies_ms: list[float] = field(default_factory=list)
    unanswered: int = 0

    def absorb(self, other: ReplyLevel) -> None:
        self.replies_ms += other.replies_ms
        self.unanswered += other.unanswered


async def run_reply_level(
    url: str, level: ReplyLevel, total: int, catcher: ReplyCatcher, time_limit_s: float
) -> None:
    import aiohttp

    sent = 0
    deadline = time.monotonic() + time_limit_s
    connector = aiohttp.TCPConnector(limit=level.concurrency, force_close=True)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one_person() -> None:
            nonlocal sent
            while sent < total and time.monotonic() < deadline:
                index = sent
                sent += 1
                token = f"reply-{level.concurrency}-{index}-{time.monotonic_ns()}"
                body, headers = signed_command(level.text, index, catcher.url(token))
                started = catcher.sent[token] = time.monotonic()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                    arrived = await catcher.wait(token, REQUEST_TIMEOUT_S)
                except (aiohttp.ClientError, TimeoutError):
                    arrived = None
                if arrived is None:
                    level.unanswered += 1
                else:
                    level.replies_ms.append((arrived - started) * 1000)

        await asyncio.gather(*(one_person() for _ in range(level.concurrency)))


def target_environment(
    target: str, options: argparse.Namespace, slack_url: str
) -> tuple[dict[str, str], str]:
    """The environment and ASGI factory a target's server runs with. amlbot gets a database
    of its own per run (migrated at start; drop a PostgreSQL one with
    `drop_postgres_schema`), never the user's state file, and runs as `amlbot serve` does:
    the edge acks, `amlbot work` children do the work."""
    env = {
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": slack_url,
    }
    factory = options.factory
    if target == "amlbot":
        if options.database == "postgres":
            env["AMLBOT_DATABASE_URL"] = fresh_postgres_schema()
        else:
            state = tempfile.mkdtemp(prefix="amlbot-bench-")
            env["AMLBOT_DATABASE_URL"] = f"sqlite:///{state}/amlbot.sqlite3"
        env["AMLBOT_LOG_LEVEL"] = "WARNING"
        env["AMLBOT_RETAIL_PRICES_URL"] = "off"  # the bench measures acks, not the internet
        env["AMLBOT_DRAIN_SECONDS"] = "0"  # each round's server is stopped, not deployed
        env["AMLBOT_WORK_PROCESSES"] = str(options.work_processes)
        if getattr(options, "stall", 0):
            env["AMLBOT_BENCH_STALL_S"] = str(options.stall)
            factory = STALLED_FACTORY
    return env, factory


async def bench_target(
    target: str, options: argparse.Namespace, slack_url: str, response_urls: list[str]
) -> tuple[list[Level], list[ReplyLevel]]:
    """One round of one target: start its server, warm up, run every level, stop it."""
    env, factory = target_environment(target, options, slack_url)
    catcher: ReplyCatcher | None = None
    replies: list[ReplyLevel] = []
    if target in REPLYING_TARGETS:
        from bench.reply_catcher import ReplyCatcher

        catcher = ReplyCatcher()
        await catcher.start()
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
            before = cpu_snapshot(server.process.pid)
            await run_level(
                url,
                level,
                options.requests,
                response_urls[offset : offset + options.requests],
                options.text,
                options.keep_alive,
                options.time_limit,
                catcher,
            )
            after = cpu_snapshot(server.process.pid)
            level.server_cpu_s = after[0] - before[0]
            level.work_cpu_s = after[1] - before[1]
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


def fresh_postgres_schema() -> str:
    """A schema of its own in the test database (AMLBOT_TEST_POSTGRES_URL)."""
    import uuid

    from sqlalchemy import create_engine, text

    base = os.environ.get(
        "AMLBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{base}?options=-csearch_path%3D{schema}"


def drop_postgres_schema(url: str) -> None:
    """Drop a schema `fresh_postgres_schema` made, once nothing uses it any more: each run
    otherwise leaves tens of thousands of rows in the test database."""
    from sqlalchemy import create_engine, text

    base, _, schema = url.partition("?options=-csearch_path%3D")
    if not schema.startswith("bench_"):
        return
    engine = create_engine(base)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def print_levels(levels: list[Level]) -> None:
    print(
        f"{'target':<10} {'conc':>4} {'acks':>5} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'>1s':>4} {'>3s':>4} {'acks/s':>7} "
        f"{'cpu us/ack':>10} {'work us/ack':>11}"
    )
    for level in levels:
        count = len(level.latencies_ms)
        print(
            f"{level.target:<10} {level.concurrency:>4} {count:>5} "
            f"{sum(level.errors.values()):>6} {level.percentile(50):>8.1f} "
            f"{level.percentile(95):>8.1f} {level.percentile(99):>8.1f} "
            f"{max(level.latencies_ms, default=math.nan):>8.1f} {level.over(1):>4} "
            f"{level.over(3):>4} {count / level.wall_s if level.wall_s else 0:>7.0f} "
            f"{per_ack_us(level.server_cpu_s, count):>10} {per_ack_us(level.work_cpu_s, count):>11}"
        )
        for name, times in sorted(level.errors.items()):
            print(f"{'':<14}error {name}: {times}")
    replied = [level for level in levels if level.replies_ms or level.unanswered]
    if replied:
        print(
            "\nreplies behind the ack levels above (sent back to back at full speed, so "
            "the replies queue behind the acks: a backlog, not what a person feels):"
        )
        for level in replied:
            print(
                f"  {level.target:<10} conc {level.concurrency:>3}: "
                f"p50 {level.percentile(50, level.replies_ms):7.1f} ms  "
                f"p99 {level.percentile(99, level.replies_ms):7.1f} ms  "
                f"unanswered {level.unanswered}"
            )


def print_replies(levels: list[ReplyLevel]) -> None:
    print(
        "\nreply latency a person feels (command sent -> reply at its response_url; each "
        "person sends the next command once the last was answered; "
        f"target p99 <= {TARGET_REPLY_P99_MS:.0f} ms at 10):"
    )
    for level in levels:
        ordered = sorted(level.replies_ms)

        def nearest(p: float, ordered: list[float] = ordered) -> float:
            if not ordered:
                return math.nan
            return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

        print(
            f"  {level.text!r:<16} conc {level.concurrency:>3}: replies {len(ordered):>5}  "
            f"p50 {nearest(50):7.1f} ms  p99 {nearest(99):7.1f} ms  "
            f"max {max(ordered, default=math.nan):7.1f} ms  unanswered {level.unanswered}"
        )


def per_ack_us(seconds: float, acks: int) -> str:
    return f"{seconds / acks * 1e6:.0f}" if acks and seconds else "-"


def print_ratios(baseline: list[Level], candidate: list[Level], target: float | None) -> None:
    """The p99 and p50 ratios of `candidate` to `baseline` per concurrency; against
    `target` (of the p99 ratio) when there is one."""
    wanted = f" (target <= {target}x)" if target is not None else ""
    print(f"\np99 ratio {candidate[0].target}/{baseline[0].target}{wanted}:")
    for base, other in zip(baseline, candidate, strict=True):
        ratio = other.percentile(99) / base.percentile(99)
        median = other.percentile(50) / base.percentile(50)
        verdict = ""
        if target is not None:
            verdict = "  within target" if ratio <= target else "  OVER target"
        print(f"  concurrency {base.concurrency:>3}: {ratio:5.2f}x (p50 {median:4.2f}x){verdict}")


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
    print(
        f"signed /aml slash commands -> uvicorn on 127.0.0.1; {options.rounds} rounds of "
        f"{options.requests} acks per level (after {options.warmup} warm-up), pooled; "
        f"keep-alive {'on' if options.keep_alive else 'off'}; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    results: dict[str, list[Level]] = {}
    reply_results: list[ReplyLevel] = []
    try:
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
        await slack.stop()
    print_levels([level for levels in results.values() for level in levels])
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
    parser.add_argument("--requests", type=int, default=300, help="acks timed per level")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
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
    parser.add_argument("--serve", choices=["bare", "bare+reply", "amlbot"], help=argparse.SUPPRESS)
    parser.add_argument("--serve-fake-slack", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mint", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.serve:
        return serve(options.serve, options.factory)
    if options.serve_fake_slack:
        return serve_fake_slack(options.mint)
    sys.path.insert(0, str(REPO_ROOT))  # for tests.fakes (request signing)
    return asyncio.run(bench(options))


if __name__ == "__main__":
    sys.exit(main())
