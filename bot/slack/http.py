"""The HTTP endpoint, an ASGI app for uvicorn: `POST /slack/events` for commands, events
and interactivity (all three use the same Request URL), and `GET /healthz`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from approvals.config import AppConfig, load_config
from bot.settings import Settings
from bot.slack.app import SlackBot, build_slack
from bot.slack.edge import SlackOptions
from bot.slack.workers import freeze_startup_objects
from bot.wiring import Core, build_core

if TYPE_CHECKING:
    from bot.serve import BackgroundService


def asgi_app(
    bot: SlackBot,
    services: Sequence[BackgroundService] = (),
    extra_routes: Sequence[BaseRoute] = (),
    *,
    owns_edge: bool = False,
) -> Starlette:
    """The endpoint for an assembled bot; `services` start and stop with the server, and
    `extra_routes` (the Event Grid webhook) are served beside Slack's. With `owns_edge`
    the server's shutdown also closes the edge (its worker processes and thread pools)."""
    handler = AsyncSlackRequestHandler(bot.app)

    async def slack_events(request: Request) -> Response:
        with bot.edge.acks_first.answering():
            return await handler.handle(request)

    def database_answers() -> bool:
        with bot.edge.core.store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    async def healthz(request: Request) -> Response:
        workers = bot.edge.workers
        if workers is not None and not workers.ready():
            return JSONResponse({"status": "starting", "workers": "starting"}, status_code=503)
        try:
            await bot.edge.in_thread(database_answers)
        except Exception as exc:
            return JSONResponse(
                {"status": "unhealthy", "database": type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for service in services:
            service.start()
        try:
            yield
        finally:
            for service in reversed(services):
                service.stop()
            if owns_edge:
                bot.edge.close()

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            *extra_routes,
        ],
    )


def create_asgi_app(
    settings: Settings | None = None,
    config: AppConfig | None = None,
    *,
    prepare: Callable[[Core], None] | None = None,
) -> Starlette:
    """`amlbot serve --http` as an ASGI factory (e.g. `uvicorn --factory
    bot.slack.http:create_asgi_app`): settings from the environment, the background
    services started by the server's lifespan. `prepare` may adjust the core first (the
    benchmark installs a stalling backend with it)."""
    from bot.serve import (
        azure_routes,
        background_services,
        slack_registrars,
        work_processes,
    )

    settings = settings or Settings()
    config = config or load_config(settings.config_path)
    settings.ensure_database_folder()
    core = build_core(config, database_url=settings.database_url)
    if prepare is not None:  # a hook into this process's core: work stays in its threads
        prepare(core)
        options = SlackOptions()
    else:
        options = SlackOptions(work_processes=work_processes(settings))
    bot = build_slack(core, settings, options=options, extra_registrars=slack_registrars())
    services = background_services(core, bot)
    app = asgi_app(bot, services, extra_routes=azure_routes(bot, settings), owns_edge=True)
    freeze_startup_objects()
    return app
