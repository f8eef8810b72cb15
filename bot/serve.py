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
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from approvals.config import AppConfig, load_config
from bot.access_log import uvicorn_log_config
from bot.eventgrid_webhook import eventgrid_routes
from bot.health import Readiness, serve_health
from bot.logs import RetriedFailures
from bot.processes import WorkerChildren, cpu_priority, freeze_startup_objects, stop_all
from bot.services import background_services, edge_services, slack_registrars
from bot.settings import Settings
from bot.slack.app import SlackBot, build_slack, missing_settings
from bot.slack.edge import SlackOptions
from bot.slack.http import asgi_app, readiness_of
from bot.wiring import Core, build_core

log = logging.getLogger(__name__)


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
        print(
            "amlbot serve: to try the bot without Slack, run `amlbot console`; to connect it, "
            "see the README, section Slack, Set-up.",
            file=sys.stderr,
        )
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
        stop_all(services)
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
    freeze_startup_objects()
    for service in services:
        service.start()
    log.info("worker %s claiming inbox items (CPU priority: %s)", os.getpid(), cpu_priority())
    stopping.wait()
    stop_all(services)
    core.store.engine.dispose()
    return 0


def _serve_http(bot: SlackBot, settings: Settings, host: str, port: int, ready: Readiness) -> None:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """On SIGTERM (a deploy), readiness turns 503 at once, but requests are still taken
        for `drain_seconds`: the load balancer goes on sending for a moment after the pod
        is told to stop, and a connection refused then is a command Slack reports as
        failed. uvicorn then finishes the requests in flight. SIGINT (a person at the
        terminal) or a second signal stops at once."""

        drain_until: float | None = None
        drained_by: tuple[int, Any] = (signal.SIGTERM, None)

        def handle_exit(self, sig: int, frame: Any) -> None:
            bot.edge.draining = True
            if sig == signal.SIGTERM and self.drain_until is None and settings.drain_seconds:
                self.drain_until = time.monotonic() + settings.drain_seconds
                self.drained_by = (sig, frame)
                log.info(
                    "SIGTERM: not ready; taking requests for %gs more, then stopping",
                    settings.drain_seconds,
                )
                return
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            drained = self.drain_until is not None and time.monotonic() >= self.drain_until
            if drained and not self.should_exit:
                super().handle_exit(*self.drained_by)
            return await super().on_tick(counter)

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


def _socket_mode_logger() -> logging.Logger:
    """The Socket Mode client's logger: it retries a failed connection every 10 s by itself,
    and says so in one WARNING line instead of an ERROR with a traceback each time."""
    logger = logging.getLogger("amlbot.socket_mode")
    if not any(isinstance(f, RetriedFailures) for f in logger.filters):
        logger.addFilter(RetriedFailures("Failed to connect (error:"))
    return logger


# A websocket handshake that Slack (or a proxy on the way) accepts over TCP but never answers
# would hold the reconnect for aiohttp's default of five minutes, with no delivery meanwhile.
HANDSHAKE_TIMEOUT = 10.0


async def bound_the_handshake(client: Any, seconds: float = HANDSHAKE_TIMEOUT) -> None:
    """Give slack_sdk's Socket Mode `client` an aiohttp session whose connect and handshake
    give up after `seconds`; the client then tries again, as after any failed connect. Only
    the handshake: once the websocket is open, aiohttp lifts the read timeout (a quiet
    connection is watched by the client's pings instead)."""
    import aiohttp

    unbounded = client.aiohttp_client_session
    client.aiohttp_client_session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
    )
    await unbounded.close()


async def _serve_socket_mode(
    bot: SlackBot, settings: Settings, connection: SocketConnection
) -> int:
    """Until SIGTERM or SIGINT; then the websocket and its client session are closed
    before the services stop (`serve`'s `finally`). 2 if Slack refuses the app token."""
    from aiohttp import ClientError
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_sdk.errors import SlackApiError

    assert settings.slack_app_token is not None  # checked by missing_settings
    handler = AsyncSocketModeHandler(
        bot.app, settings.slack_app_token.get_secret_value(), logger=_socket_mode_logger()
    )
    await bound_the_handshake(handler.client)
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
