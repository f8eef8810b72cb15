"""The response_urls of the ack benchmark's load: a small HTTP server in a process of its
own that notes when each reply arrives, and the client the load uses to ask it.

It stands in for Slack's servers (a reply to a slash command goes to hooks.slack.com),
which do not share the bot's CPUs, so it runs at Linux's idle scheduling priority
(SCHED_IDLE): it takes a CPU only when nothing else wants one. (At nice 19, until
2026-12-05, it still took 0.1-0.2 of a core from the server in an ack level.) That can only
note a reply late, never early: the reply latency it reports errs against amlbot. It used
to run in the load's own process: there every reply the bot posted
during an ack level took the event loop that was timing the acks, so amlbot's acks were
timed late by the work of receiving its own replies, and the bare app's were not.

Times are `time.monotonic()`, one clock for every process on the machine, so the load
notes when it sent a command and the catcher when its reply arrived.

    python bench/reply_catcher.py    # prints "READY <base url>", serves until stdin closes
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ARRIVALS_PER_ASK = 5000


def serve() -> int:
    from aiohttp import web

    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    arrived: dict[str, float] = {}
    waiters: dict[str, asyncio.Event] = {}

    async def reply(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        arrived.setdefault(token, time.monotonic())
        waiter = waiters.pop(token, None)
        if waiter is not None:
            waiter.set()
        await request.read()
        return web.Response(text="ok")

    async def wait(request: web.Request) -> web.Response:
        """The arrival time of one reply, once it arrives (404 past `timeout` seconds)."""
        token = request.match_info["token"]
        if token not in arrived:
            waiter = waiters.setdefault(token, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), float(request.query.get("timeout", "10")))
        if token not in arrived:
            return web.json_response({"token": token}, status=404)
        return web.json_response({"at": arrived[token]})

    async def arrivals(request: web.Request) -> web.Response:
        """Of the tokens posted (a JSON list), the arrival time of each that arrived."""
        tokens = await request.json()
        return web.json_response({token: arrived[token] for token in tokens if token in arrived})

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/reply/{token}", reply)
        app.router.add_get("/wait/{token}", wait)
        app.router.add_post("/arrivals", arrivals)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"READY http://127.0.0.1:{port}/", flush=True)
        # Until the load closes our stdin (or ends us).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(run())
    return 0


class ReplyCatcher:
    """The load's side: a response_url per command, and when each reply arrived."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}  # token -> time.monotonic() the command was sent
        self.base = ""
        self._child: Any = None
        self._session: Any = None

    async def start(self) -> None:
        import aiohttp

        from bench.ack_servers import start_child

        self._child = await start_child([], {}, script=SCRIPT)
        self.base = self._child.ready
        # No limit on connections: every person of a reply level waits on one at a time.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    @property
    def pid(self) -> int | None:
        """The catcher's process, whose CPU the bench counts apart."""
        return self._child.process.pid if self._child is not None else None

    def url(self, token: str) -> str:
        return f"{self.base}reply/{token}"

    async def wait(self, token: str, timeout: float) -> float | None:
        """When the reply for `token` arrived, waiting up to `timeout` seconds for it."""
        async with self._session.get(
            f"{self.base}wait/{token}", params={"timeout": str(timeout)}
        ) as response:
            if response.status != 200:
                return None
            return float((await response.json())["at"])

    async def arrivals(self, tokens: list[str]) -> dict[str, float]:
        """When each token's reply arrived, of those that did; asked a few thousand at a
        time (the catcher takes bodies up to aiohttp's 1 MiB: a level of 40,000 is more)."""
        arrived: dict[str, float] = {}
        for start in range(0, len(tokens), ARRIVALS_PER_ASK):
            asked = tokens[start : start + ARRIVALS_PER_ASK]
            async with self._session.post(f"{self.base}arrivals", json=asked) as response:
                response.raise_for_status()
                arrived |= {token: float(at) for token, at in (await response.json()).items()}
        return arrived

    async def collect(self, level: Any, tokens: list[str], limit_s: float = 15.0) -> None:
        """Wait up to `limit_s` for every token's reply; note each one's latency on `level`
        and count those that never came."""
        deadline = time.monotonic() + limit_s
        arrived = await self.arrivals(tokens)
        while len(arrived) < len(tokens) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            arrived = await self.arrivals(tokens)
        for token in tokens:
            if token in arrived and token in self.sent:
                level.replies_ms.append((arrived[token] - self.sent[token]) * 1000)
            else:
                level.unanswered += 1

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._child is not None:
            await self._child.stop()


if __name__ == "__main__":
    sys.exit(serve())
