"""The servers `ack_latency.py` and `ack_arrivals.py` measure, and how the load runs them.

    python bench/ack_servers.py --serve bare|bare+reply|amlbot [--factory module:callable]
    python bench/ack_servers.py --serve-fake-slack --mint N

Holds the servers under test (the bare Bolt app, with or without its replies, and amlbot
from its factory, optionally with every workspace backend stalling) and the fake Slack Web
API, each run as a child process of this script that prints a READY line; the plumbing the
load uses to start them, wait until they are healthy and read their CPU time and memory;
and each target's environment, with a database of its own (a fresh PostgreSQL schema, or
a SQLite file). Nothing here times anything: see `ack_latency.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
STALLED_FACTORY = "bench.ack_servers:stalled_amlbot_app"
STARTUP_TIMEOUT_S = 30.0


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


# A busy loop that takes a CPU only when nothing else wants one: the control for what sharing
# the cores with idle-priority work (amlbot's `work` children) costs a server that acks.
_IDLE_LOOP = (
    "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n    pass\n"
)


async def start_idle_load(count: int) -> list[asyncio.subprocess.Process]:
    return [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _IDLE_LOOP) for _ in range(count)
    ]


async def stop_idle_load(loops: list[asyncio.subprocess.Process]) -> None:
    for loop in loops:
        if loop.returncode is None:
            loop.kill()
        await loop.wait()


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


# ---- starting and watching them (the load's process) -----------------------------------


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


# ---- each target's environment and database --------------------------------------------


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


# ---- a child's command line ------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """A child of the load: one server under test, or the fake Slack."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--serve", choices=["bare", "bare+reply", "amlbot"])
    parser.add_argument("--factory", default=AMLBOT_FACTORY, help="module:callable for amlbot")
    parser.add_argument("--serve-fake-slack", action="store_true")
    parser.add_argument("--mint", type=int, default=0, help="response_urls for the fake Slack")
    options = parser.parse_args(argv)
    if options.serve:
        return serve(options.serve, options.factory)
    if options.serve_fake_slack:
        return serve_fake_slack(options.mint)
    parser.error("one of --serve TARGET or --serve-fake-slack")


if __name__ == "__main__":
    sys.exit(main())
