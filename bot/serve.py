"""`amlbot serve` and `amlbot work`: the Slack edge, the workers, and what runs beside them.

- The edge (Socket Mode, or HTTP on uvicorn) verifies, keeps each delivery in the inbox and
  acks. It holds no work of its own beyond opening modals, so it scales freely.
- A worker claims inbox items and runs them, delivers the outbox and runs the sweeps
  (every unit of which is claimed in the database, so any number of workers may run).
- `serve` starts child processes running `amlbot work` (`AMLBOT_WORK_PROCESSES` of them on
  PostgreSQL, one per CPU by default; one on SQLite, whose claims are meant for one
  claimer per database file) and starts a new one when one dies. No worker runs in the
  acking process: it would take the interpreter's lock from the acks.
  `AMLBOT_WORK_PROCESSES=0` serves the edge alone, for a deployment that runs
  `amlbot work` separately.

SIGTERM (every deploy): readiness turns off, the edge stops taking new deliveries and
finishes the ones in flight, and the workers finish what they hold within a grace period
or release it to another worker. Nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from http.server import ThreadingHTTPServer
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from approvals import inbox
from approvals.config import AppConfig, load_config
from approvals.outbox import queued_signal
from approvals.prices import CHORE_EVERY, refresh_if_due
from approvals.scheduled import HOLDER
from bot.access_log import uvicorn_log_config
from bot.eventgrid_webhook import EVENTGRID_HANDLER, eventgrid_routes, job_events_handler
from bot.health import Readiness, Verdict
from bot.metrics import CONTENT_TYPE_LATEST, Metrics
from bot.outbox_worker import OutboxWorker
from bot.processes import (
    SHUTDOWN_GRACE_SECONDS,
    BackgroundService,
    WorkerChildren,
    work_processes,
)
from bot.scheduler import Housekeeping, NotificationScheduler
from bot.settings import Settings
from bot.slack.app import Registrar, SlackBot, build_slack, missing_settings
from bot.slack.edge import SlackOptions
from bot.slack.http import asgi_app, freeze_startup_objects, readiness_of
from bot.slack.listeners.drift import register_slack_drift
from bot.slack.listeners.notices import register_slack_actions
from bot.wiring import Core, build_core
from bot.work import Handler, InboxWorker
from workspaces.azure.retail_prices import retail_fetch

log = logging.getLogger(__name__)

OUTBOX_POLL = timedelta(seconds=1)
OUTBOX_MIN_GAP = timedelta(milliseconds=20)
EMAIL_RETRY = timedelta(minutes=10)
PRUNE_EVERY = timedelta(hours=1)


class OutboxLoop:
    """Delivers the outbox: at once when woken (a change queued a message), else every
    `interval` (retries, and what other processes queued). Not within `min_gap` of the last
    round: a burst of wakes is one round, not a busy loop."""

    name = "outbox"

    def __init__(
        self,
        work: Callable[[], object],
        interval: timedelta = OUTBOX_POLL,
        min_gap: timedelta = OUTBOX_MIN_GAP,
        queued: threading.Event | None = None,
    ) -> None:
        self.interval = interval.total_seconds()
        self.queued = queued
        self.min_gap = min_gap.total_seconds()
        self.work = work
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="amlbot-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def wake_if_queued(self) -> None:
        """Wake only if this process queued a message since the last round (`queued`)."""
        if self.queued is None or self.queued.is_set():
            self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            if self.queued is not None:
                self.queued.clear()  # before the round: what is queued during it wakes us
            try:
                self.work()
            except Exception:
                log.exception("delivering the outbox failed; it runs again")
            if self.min_gap and self._stopping.wait(self.min_gap):
                return
            self._wake.wait(self.interval)


class StoppingWorker:
    """The inbox worker as a background service, stopped with the shutdown grace."""

    name = "inbox"

    def __init__(self, worker: InboxWorker, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        self.worker = worker
        self.grace = grace

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(self.grace)


def slack_registrars() -> list[Registrar]:
    """Listeners beyond the built-in ones (`Callable[[AsyncApp, SlackEdge], None]`), e.g.
    the notifications' buttons. Workers build them too: a job is found by its name."""
    return [register_slack_actions, register_slack_drift]


def inbox_handlers(bot: SlackBot) -> dict[str, Handler]:
    """Every kind of inbox item, by handler name: the Slack jobs and Event Grid deliveries."""
    handlers: dict[str, Handler] = {name: bot.edge.run_item for name in bot.edge.jobs}
    handlers[EVENTGRID_HANDLER] = job_events_handler(bot.edge.core, bot.edge.on_core_done)
    return handlers


def background_services(
    core: Core,
    bot: SlackBot,
    *,
    worker: bool = True,
    grace: float = SHUTDOWN_GRACE_SECONDS,
    prices_url: str | None = None,
) -> list[BackgroundService]:
    """What a worker runs beside the edge: the inbox worker, the outbox, the sweeps and
    housekeeping (with `prices_url`, the daily price refresh from that Retail Prices API).
    Without `worker`, nothing: the edge only accepts."""
    if not worker:
        return []
    outbox = OutboxWorker(core.store, bot.deliverer, core.clock, core.config)
    outbox_loop = OutboxLoop(outbox.run_once, queued=queued_signal(core.store.engine))
    # A card or notice should not wait for the next poll after a command changed state.
    bot.edge.on_core_done = outbox_loop.wake_if_queued
    inbox_worker = InboxWorker(
        core.store,
        core.clock,
        inbox_handlers(bot),
        threads=bot.edge.options.work_threads,
        on_dead=bot.edge.dead_letter,
        on_handled=outbox_loop.wake_if_queued,
        metrics=core.metrics,
    )
    bot.edge.on_accepted = inbox_worker.wake
    bot.edge.worker = inbox_worker
    identity = bot.edge.identity

    def resolve_emails() -> None:
        left = identity.resolve_emails()
        if left:
            log.warning("not yet known in Slack, retried later: %s", ", ".join(left))

    def prune_inbox() -> None:
        inbox.prune(core.store, core.clock.now())

    chores = [
        Housekeeping("resolve-emails", EMAIL_RETRY, resolve_emails),
        Housekeeping("prune-inbox", PRUNE_EVERY, prune_inbox),
    ]
    if prices_url is not None:
        fetch = retail_fetch(prices_url)
        chores.append(
            Housekeeping("prices", CHORE_EVERY, lambda: refresh_if_due(core, fetch, HOLDER))
        )

    return [
        outbox_loop,
        StoppingWorker(inbox_worker, grace),
        # Sweeps: job updates, grant expiry, reminders, idle compute, recovery. What they
        # queue is delivered at once by waking the outbox loop.
        NotificationScheduler(
            core,
            on_change=outbox_loop.wake,
            housekeeping=chores,
        ),
    ]


def edge_services(
    core: Core,
    bot: SlackBot,
    settings: Settings,
    config_path: str | None,
    *,
    health_port: int | None = None,
    health_host: str = "0.0.0.0",
) -> list[BackgroundService]:
    """What runs beside an edge: its `amlbot work` children, none when the deployment runs
    its workers itself (`AMLBOT_WORK_PROCESSES=0`). With `health_port`, child i answers
    probes and metrics on `health_port + i`."""
    children = work_processes(settings, settings.database_url)
    if not children:
        return []
    return [WorkerChildren(children, config_path, health_port=health_port, health_host=health_host)]


def azure_routes(bot: SlackBot, settings: Settings) -> list[BaseRoute]:
    """`POST /azure/events`: Azure Event Grid deliveries, kept in the inbox before the 200."""
    return list(
        eventgrid_routes(
            bot.edge.core,
            secret=settings.eventgrid_secret,
            on_accepted=lambda: bot.edge.on_accepted(),
        )
    )


def create_asgi_app(
    settings: Settings | None = None,
    config: AppConfig | None = None,
    *,
    prepare: Callable[[Core], None] | None = None,
) -> Starlette:
    """`amlbot serve --http` as an ASGI factory (e.g. `uvicorn --factory
    bot.serve:create_asgi_app`): settings from the environment, the background
    services started by the server's lifespan. `prepare` may adjust the core first (the
    benchmark installs a stalling backend with it)."""
    settings = settings or Settings()
    config = config or load_config(settings.config_path)
    settings.ensure_database_folder()
    core = build_core(
        config, database_url=settings.database_url, simulated_latency=settings.simulated_latency
    )
    if prepare is not None:  # a hook into this process's core (its in-process worker)
        prepare(core)
    bot = build_slack(core, settings, options=SlackOptions(), extra_registrars=slack_registrars())
    if prepare is not None:  # the adjusted core must do the work: a worker in this process
        services = background_services(core, bot)
    else:  # as `serve` does: `amlbot work` children, or none when they run elsewhere
        services = edge_services(core, bot, settings, settings.config_path)
    app = asgi_app(bot, services, extra_routes=azure_routes(bot, settings), owns_edge=True)
    freeze_startup_objects()
    return app


def serve(
    settings: Settings,
    config: AppConfig,
    *,
    http: bool,
    host: str,
    port: int,
    config_path: str | None = None,
    health_port: int | None = None,
    work_health_port: int | None = None,
) -> int:
    """The Slack edge until SIGTERM. In Socket Mode, `/healthz`, `/readyz` and `/metrics`
    are served on `health_port` (HTTP mode serves them beside `/slack/events`). The
    `amlbot work` children serve theirs from `work_health_port` on (default: the port
    after the one `serve` answers probes on; 0: none), one port each."""
    problems = missing_settings(settings, socket_mode=not http)
    if problems:
        for problem in problems:
            print(f"amlbot serve: {problem}", file=sys.stderr)
        return 2
    settings.ensure_database_folder()
    core = build_core(
        config,
        database_url=settings.database_url,
        simulated_latency=settings.simulated_latency,
    )
    bot = build_slack(
        core,
        settings,
        socket_mode=not http,
        options=SlackOptions(),
        extra_registrars=slack_registrars(),
    )
    if work_health_port is None:  # the port after the one serve answers probes on
        probe_port = port if http else health_port
        work_health_port = probe_port + 1 if probe_port else 0
    services = edge_services(
        core,
        bot,
        settings,
        config_path or settings.config_path,
        health_port=work_health_port or None,
        health_host=host,
    )
    children = next((s for s in services if isinstance(s, WorkerChildren)), None)
    children_status = children.status if children is not None else lambda: None
    # uvicorn re-raises the SIGTERM it handled once it has shut down; as an exception it
    # lets the `finally` below finish the acks and stop the workers gracefully.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    for service in services:
        service.start()
    freeze_startup_objects()
    exit_code = 0
    connection = SocketConnection()
    try:
        if not http and health_port:
            ready = readiness_of(
                bot,
                services,
                slack_connected=connection.connected,
                work_processes=children_status,
            )
            try:
                serve_health(health_port, ready, core.metrics, host)
            except OSError as taken:
                print(
                    f"amlbot serve: cannot serve /healthz, /readyz and /metrics on "
                    f"{host}:{health_port} ({taken.strerror}); choose --health-port",
                    file=sys.stderr,
                )
                return 2
        if http:
            ready = readiness_of(bot, services, work_processes=children_status)
            _serve_http(bot, settings, host, port, ready)
        else:
            exit_code = asyncio.run(_serve_socket_mode(bot, settings, connection))
    except KeyboardInterrupt:
        pass
    finally:
        bot.edge.close()  # finish the acks in flight, then take no more
        for service in reversed(services):
            service.stop()
    return exit_code


class SocketConnection:
    """Socket Mode's websocket, as readiness sees it from the probe's thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any = None  # slack_sdk's aiohttp SocketModeClient, once made

    def connected(self) -> bool:
        if self.loop is None or self.client is None:
            return False
        try:
            asking = asyncio.run_coroutine_threadsafe(self.client.is_connected(), self.loop)
            return bool(asking.result(timeout=2))
        except Exception:
            return False


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def work(
    settings: Settings,
    config: AppConfig,
    *,
    health_port: int | None = None,
    health_host: str = "0.0.0.0",
) -> int:
    """`amlbot work`: workers alone, until SIGTERM; then finish or release what they hold.
    With `health_port`, `/healthz` (alive) and `/readyz` (claiming) for probes."""
    settings.ensure_database_folder()
    core = build_core(
        config,
        database_url=settings.database_url,
        simulated_latency=settings.simulated_latency,
    )
    if not settings.slack_bot_token:
        print("amlbot work: SLACK_BOT_TOKEN (the bot token, xoxb-...) is not set", file=sys.stderr)
        return 2
    bot = build_slack(core, settings, extra_registrars=slack_registrars(), worker_only=True)
    bot.edge.identity.load_cached()
    services = background_services(core, bot, prices_url=settings.prices_url)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    # Probes and metrics answer before the first claim, so whatever the worker does (and
    # counts) can be seen; `/readyz` says "not ready" until the worker claims.
    if health_port is not None:
        ready = readiness_of(bot, services, draining=stopping.is_set)
        try:
            serve_health(health_port, ready, core.metrics, health_host)
        except OSError as taken:
            print(
                f"amlbot work: cannot serve /healthz, /readyz and /metrics on "
                f"{health_host}:{health_port} ({taken.strerror}); choose --health-port",
                file=sys.stderr,
            )
            return 2
    for service in services:
        service.start()
    log.info("worker %s claiming inbox items", os.getpid())
    stopping.wait()
    for service in reversed(services):
        service.stop()
    core.store.engine.dispose()
    return 0


def serve_health(
    port: int,
    ready: Callable[[], Verdict],
    metrics: Metrics | None = None,
    host: str = "0.0.0.0",
) -> ThreadingHTTPServer:
    """`GET /healthz` (the process answers), `/readyz` (`ready()`) and `/metrics`, on a
    thread: for the processes without an HTTP app (Socket Mode, `amlbot work`)."""
    from http.server import BaseHTTPRequestHandler

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            content_type, body = "text/plain", b"ok\n"
            if self.path == "/healthz":
                status = 200
            elif self.path == "/readyz":
                verdict = ready()
                status = 200 if verdict.ready else 503
                content_type, body = "application/json", verdict.json().encode()
            elif self.path == "/metrics" and metrics is not None:
                try:
                    status, body = 200, metrics.exposition()
                    content_type = CONTENT_TYPE_LATEST
                except Exception:
                    log.exception("collecting metrics failed")
                    status, body = 500, b"collecting metrics failed\n"
            else:
                status, body = 404, b"not found\n"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the log

    server = ThreadingHTTPServer((host, port), Probe)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="amlbot-health", daemon=True).start()
    return server


def _serve_http(bot: SlackBot, settings: Settings, host: str, port: int, ready: Readiness) -> None:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # Readiness off first, so the load balancer sends no more; uvicorn then
            # finishes the requests in flight.
            bot.edge.draining = True
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    log.info("serving Slack events on http://%s:%s/slack/events", host, port)
    server = DrainingServer(
        uvicorn.Config(
            asgi_app(bot, extra_routes=azure_routes(bot, settings), readiness=ready),
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            # Event Grid's shared secret comes as `?code=`: no query string reaches the log.
            log_config=uvicorn_log_config(),
            lifespan="off",
            # Slack closes idle connections itself; keep ours open a little longer.
            timeout_keep_alive=30,
        )
    )
    server.run()


async def _serve_socket_mode(
    bot: SlackBot, settings: Settings, connection: SocketConnection
) -> int:
    """Until SIGTERM or SIGINT; then the websocket and its client session are closed
    before the services stop (`serve`'s `finally`). 2 if Slack refuses the app token."""
    from aiohttp import ClientError
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_sdk.errors import SlackApiError

    assert settings.slack_app_token is not None  # checked by missing_settings
    handler = AsyncSocketModeHandler(bot.app, settings.slack_app_token.get_secret_value())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    connection.loop, connection.client = loop, handler.client

    def drain() -> None:
        bot.edge.draining = True
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, drain)
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
