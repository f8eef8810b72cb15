"""`amlbot serve`: the Slack app (Socket Mode, or HTTP on uvicorn) and the background
services beside it.

Background services are built in `background_services` and started before the app
answers Slack; each is a thread with `start()` / `stop()`. The scheduler of sweeps
(notifications) is added there.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from starlette.routing import BaseRoute

from approvals.config import AppConfig
from bot.delivery import OutboxWorker
from bot.settings import Settings
from bot.slack.app import Registrar, SlackBot, build_slack, missing_settings
from bot.slack.edge import SlackOptions
from bot.slack.workers import freeze_startup_objects
from bot.wiring import Core, build_core

log = logging.getLogger(__name__)

OUTBOX_POLL = timedelta(seconds=1)
OUTBOX_MIN_GAP = timedelta(milliseconds=100)
# The acking process's safety net when worker processes deliver the outbox.
ACKING_OUTBOX_POLL = timedelta(minutes=1)
EMAIL_RETRY = timedelta(minutes=10)
PRUNE_EVERY = timedelta(hours=1)


class BackgroundService(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PeriodicThread:
    """Runs `work` every `interval` on a daemon thread; `wake()` runs it sooner, but not
    within `min_gap` of the last round (a burst of wakes is one round, not a busy loop
    competing with the acks). A failure is logged and the next round goes on."""

    def __init__(
        self,
        name: str,
        interval: timedelta,
        work: Callable[[], object],
        min_gap: timedelta = timedelta(0),
    ) -> None:
        self.name = name
        self.interval = interval.total_seconds()
        self.min_gap = min_gap.total_seconds()
        self.work = work
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"amlbot-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.work()
            except Exception:
                log.exception("background service %s failed; it runs again", self.name)
            if self.min_gap and self._stopping.wait(self.min_gap):
                return
            self._wake.wait(self.interval)
            self._wake.clear()


def slack_registrars() -> list[Registrar]:
    """Listeners beyond the built-in ones (`Callable[[AsyncApp, SlackEdge], None]`), e.g.
    the notifications' buttons. Worker processes import them too (their renderers)."""
    from bot.notify.slack_actions import register_slack_actions

    return [register_slack_actions]


def background_services(core: Core, bot: SlackBot) -> list[BackgroundService]:
    """Everything that runs beside the listeners. Add new services (the scheduler) here."""
    outbox = OutboxWorker(core.store, bot.deliverer, core.clock, core.config)
    # With worker processes, they deliver the outbox; the acking process only delivers
    # what its own Event Grid webhook changed (when woken), so a poll of the database
    # every second does not take the GIL from its acks.
    poll = OUTBOX_POLL if bot.edge.workers is None else ACKING_OUTBOX_POLL
    outbox_loop = PeriodicThread("outbox", poll, outbox.run_once, OUTBOX_MIN_GAP)
    # A card or notice should not wait for the next poll after a command changed state.
    bot.edge.on_core_done = outbox_loop.wake
    identity = bot.edge.identity

    def resolve_emails() -> None:
        left = identity.resolve_emails()
        if left:
            log.warning("not yet known in Slack, retried later: %s", ", ".join(left))

    from bot.notify.runtime import NotificationScheduler

    if bot.edge.workers is not None:
        # The first worker runs the rest (bot/slack/workers.py), away from the acks.
        return [outbox_loop]
    return [
        outbox_loop,
        # Sweeps: job updates, grant expiry, reminders, idle compute. What they queue is
        # delivered at once by waking the outbox loop.
        NotificationScheduler(core, on_change=outbox_loop.wake),
        PeriodicThread("resolve-emails", EMAIL_RETRY, resolve_emails),
        PeriodicThread("prune-inbound", PRUNE_EVERY, bot.edge.inbound.prune),
    ]


def azure_routes(bot: SlackBot, settings: Settings) -> list[BaseRoute]:
    """`POST /azure/events`: Azure Event Grid deliveries of job status changes, recorded by
    the worker processes when there are any (see `bot.notify.webhook`)."""
    from bot.notify.webhook import eventgrid_routes, record_job_events
    from bot.slack.edge import Delivery

    def to_a_worker(events: list[dict[str, Any]]) -> None:
        bot.edge.submit(record_job_events, Delivery({"events": events}, None, 0))

    return list(
        eventgrid_routes(
            bot.edge.core,
            secret=settings.eventgrid_secret,
            on_change=bot.edge.on_core_done,
            hand_over=to_a_worker if bot.edge.workers is not None else None,
        )
    )


def work_processes(settings: Settings) -> int:
    """Processes for the work beside the one that acks: `AMLBOT_WORK_PROCESSES`, else one
    per spare CPU this process may use, 1 to 4."""
    if settings.work_processes is not None:
        return settings.work_processes
    return max(1, min(4, usable_cpus() - 1))


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota.

    `os.cpu_count()` counts the machine's: in a container limited to one CPU on a 16-core
    node it says 16, and four workers of 100-200 MB each would meet the memory limit.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = cpus or os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_cpu_quota(root: Path) -> float | None:
    """The CPU quota of cgroup v2 (`cpu.max`: "QUOTA PERIOD" or "max PERIOD") or v1
    (`cpu/cpu.cfs_quota_us`, -1 for none), in CPUs; None when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return int(quota) / int(period) if quota != "max" else None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def serve(settings: Settings, config: AppConfig, *, http: bool, host: str, port: int) -> int:
    problems = missing_settings(settings, socket_mode=not http)
    if problems:
        for problem in problems:
            print(f"amlbot serve: {problem}", file=sys.stderr)
        return 2
    settings.ensure_database_folder()
    core = build_core(config, database_url=settings.database_url)
    options = SlackOptions(work_processes=work_processes(settings))
    bot = build_slack(
        core, settings, socket_mode=not http, options=options, extra_registrars=slack_registrars()
    )
    services = background_services(core, bot)
    # uvicorn re-raises the SIGTERM it handled once it has shut down; as an exception it
    # lets the `finally` below stop the services and the worker processes.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    for service in services:
        service.start()
    freeze_startup_objects()
    exit_code = 0
    try:
        if http:
            _serve_http(bot, settings, host, port)
        else:
            exit_code = asyncio.run(_serve_socket_mode(bot, settings))
    except KeyboardInterrupt:
        pass
    finally:
        for service in reversed(services):
            service.stop()
        bot.edge.close()
    return exit_code


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve_http(bot: SlackBot, settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from bot.access_log import uvicorn_log_config
    from bot.slack.http import asgi_app

    log.info("serving Slack events on http://%s:%s/slack/events", host, port)
    uvicorn.run(
        asgi_app(bot, extra_routes=azure_routes(bot, settings)),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # Event Grid's shared secret comes as `?code=`: no query string reaches the log.
        log_config=uvicorn_log_config(),
        lifespan="off",
        # Slack closes idle connections itself; keep ours open a little longer.
        timeout_keep_alive=30,
    )


async def _serve_socket_mode(bot: SlackBot, settings: Settings) -> int:
    """Until SIGTERM or SIGINT; then the websocket and its client session are closed
    before the services stop (`serve`'s `finally`). 2 if Slack refuses the app token."""
    from aiohttp import ClientError
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_sdk.errors import SlackApiError

    assert settings.slack_app_token is not None  # checked by missing_settings
    handler = AsyncSocketModeHandler(bot.app, settings.slack_app_token.get_secret_value())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        log.info("connecting to Slack in Socket Mode")
        # The first URL is asked for here, not in the client's connect loop: that loop
        # retries every error forever, so a wrong token would only fill the log.
        try:
            handler.client.wss_uri = await handler.client.issue_new_wss_url()
        except SlackApiError as refused:
            print(
                f"amlbot serve: Slack refused SLACK_APP_TOKEN "
                f"({refused.response.get('error')}); it must be this app's app-level "
                "token (xapp-...) with the connections:write scope",
                file=sys.stderr,
            )
            return 2
        except (ClientError, OSError, TimeoutError) as unreachable:
            log.warning("Slack is not reachable yet (%r); retrying", unreachable)
        # The client retries a failed connection by itself; a signal must stop it even then.
        connecting = asyncio.ensure_future(handler.connect_async())  # type: ignore[no-untyped-call]
        await stopping.wait()
        connecting.cancel()
        return 0
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
