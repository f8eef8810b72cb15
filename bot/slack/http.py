"""The HTTP endpoint, an ASGI app for uvicorn: `POST /slack/events` for commands, events
and interactivity (all three use the same Request URL), `GET /healthz` (the process
answers: no database call, so a database blip restarts nothing), `GET /readyz` (send
traffic here: `bot/health.py`; JSON naming each check) and
`GET /metrics` (Prometheus, `bot/metrics.py`).

In front of Bolt, `refusal` answers what Bolt would turn into a 500 with a traceback (a
timestamp that is not a number, a body that is not UTF-8 or whose `payload` is not a
JSON object) or would log whole at INFO (any request whose signature fails): a body is
capped, the signature checked, and the body parsed as Bolt parses it, and a refusal is
logged as one line that never carries the body.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from slack_bolt.adapter.starlette.async_handler import (
    to_async_bolt_request,
    to_starlette_response,
)
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from approvals.config import AppConfig, load_config
from bot.health import Readiness
from bot.metrics import CONTENT_TYPE_LATEST
from bot.settings import Settings
from bot.slack.app import SlackBot, build_slack
from bot.slack.edge import SlackOptions
from bot.slack.payloads import shape_problem
from bot.wiring import Core, build_core

if TYPE_CHECKING:
    from bot.serve import BackgroundService

log = logging.getLogger(__name__)

# Slack's largest requests (a view_submission of a full modal) are tens of KB.
MAX_BODY_BYTES = 512 * 1024
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_RETRY_NUM = re.compile(r"[0-9]{1,3}")


class Refused(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


async def capped_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, f"body over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def refusal(verifier: SignatureVerifier, request: Request, body: bytes) -> Refused | None:
    """Why a request must not reach Bolt, or None."""
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        return Refused(401, "missing or malformed signature headers")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Refused(400, "body is not UTF-8")
    if not verifier.is_valid(text, timestamp, signature):
        return Refused(401, "signature does not match, or the timestamp is stale")
    retry = request.headers.get("x-slack-retry-num")
    if retry is not None and not _RETRY_NUM.fullmatch(retry):
        return Refused(400, "X-Slack-Retry-Num is not a small number")
    try:
        parsed = parse_body(text, request.headers.get("content-type"))
    except ValueError:
        return Refused(400, "body is neither form fields nor JSON")
    if not isinstance(parsed, dict):
        return Refused(400, "body (or its payload) is not a JSON object")
    problem = shape_problem(parsed)
    if problem is not None:
        return Refused(400, f"not a payload Slack sends: {problem}")
    return None


def asgi_app(
    bot: SlackBot,
    services: Sequence[BackgroundService] = (),
    extra_routes: Sequence[BaseRoute] = (),
    *,
    owns_edge: bool = False,
    readiness: Readiness | None = None,
) -> Starlette:
    """The endpoint for an assembled bot; `services` start and stop with the server, and
    `extra_routes` (the Event Grid webhook) are served beside Slack's. With `owns_edge`
    the server's shutdown also closes the edge (its worker processes and thread pools)."""
    verifier = SignatureVerifier(bot.signing_secret.get_secret_value())

    async def slack_events(request: Request) -> Response:
        try:
            body = await capped_body(request)
            refused = refusal(verifier, request, body)
        except Refused as exc:
            refused = exc
        if refused is not None:
            log.info("refused a request to /slack/events: %s", refused.why)
            return JSONResponse({"error": refused.why}, status_code=refused.status)
        try:
            bolt_request = to_async_bolt_request(request, body)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            # Bolt reads fields we do not (channel, enterprise, ...) without checking their
            # types; a signed payload of a shape Slack never sends is refused, not a 500.
            why = f"not a payload Slack sends ({type(exc).__name__})"
            log.info("refused a request to /slack/events: %s", why)
            return JSONResponse({"error": why}, status_code=400)
        bolt_response = await bot.app.async_dispatch(bolt_request)
        return to_starlette_response(bolt_response)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    ready = readiness

    async def readyz(request: Request) -> Response:
        nonlocal ready
        if bot.edge.draining:  # before anything else: the edge's threads may be gone
            return JSONResponse({"status": "draining"}, status_code=503)
        if ready is None:  # built at the first probe: the worker is on the edge by then
            from bot.serve import readiness as readiness_of

            ready = readiness_of(bot, services)
        verdict = await bot.edge.in_thread(ready)
        return JSONResponse(verdict.body(), status_code=200 if verdict.ready else 503)

    async def metrics(request: Request) -> Response:
        # The database gauges are read at scrape: off the event loop.
        body = await bot.edge.in_thread(bot.edge.core.metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

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
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
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
    from bot.serve import azure_routes, background_services, edge_services, slack_registrars

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


def freeze_startup_objects() -> None:
    """Move everything made at start-up out of the garbage collector's way.

    The imports (SQLAlchemy, pydantic, Bolt) leave hundreds of thousands of objects that
    never die; every full collection would walk them again, pausing the process for tens
    of milliseconds while acks wait. Measured with bench/ack_latency.py.
    """
    gc.collect()
    gc.freeze()
