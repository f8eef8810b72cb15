"""The HTTP endpoint, an ASGI app for uvicorn: `POST /slack/events` for commands, events
and interactivity (all three use the same Request URL), `GET /healthz` (the process
answers: no database call, so a database blip restarts nothing), `GET /readyz` (send
traffic here: `bot/health.py`; JSON naming each check) and
`GET /metrics` (Prometheus, `bot/metrics.py`).

In front of Bolt, `verify` refuses what Bolt would turn into a 500 with a traceback (a
timestamp that is not a number, a body that is not UTF-8 or whose `payload` is not a
JSON object) or would log whole at INFO (any request whose signature fails): a body is
capped, the signature checked over its raw bytes, and the body parsed as Bolt parses it,
and a refusal is logged as one line that never carries the body. Bolt is handed that
parse (`bolt_request`) instead of parsing the body a second time. This is the only way an
HTTP request reaches Bolt, so Bolt's own signature check is off (`app.py`): this one is
the check.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_bolt.adapter.starlette.async_handler import to_starlette_response
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.health import Readiness, SchemaCheck
from bot.metrics import CONTENT_TYPE_LATEST
from bot.processes import BackgroundService, stop_all
from bot.scheduler import NotificationScheduler
from bot.slack.app import SlackBot
from bot.slack.payloads import shape_problem

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


@dataclass(frozen=True)
class Verified:
    """A request whose signature matched: its body as signed, and as Bolt parses it."""

    text: str
    parsed: dict[str, Any]


def verify(verifier: SignatureVerifier, request: Request, body: bytes) -> Verified:
    """The body of a request that may reach Bolt; `Refused` says why one may not."""
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        raise Refused(401, "missing or malformed signature headers")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8") from None
    if not verifier.is_valid(text, timestamp, signature):
        raise Refused(401, "signature does not match, or the timestamp is stale")
    retry = request.headers.get("x-slack-retry-num")
    if retry is not None and not _RETRY_NUM.fullmatch(retry):
        raise Refused(400, "X-Slack-Retry-Num is not a small number")
    try:
        parsed = parse_body(text, request.headers.get("content-type"))
    except ValueError:
        raise Refused(400, "body is neither form fields nor JSON") from None
    if not isinstance(parsed, dict):
        raise Refused(400, "body (or its payload) is not a JSON object")
    # Python's parser takes NaN and Infinity, which JSON (and PostgreSQL's json) does not:
    # kept in the inbox, one would fail the insert of every arrival batched with it.
    if ("NaN" in text or "Infinity" in text) and _holds_a_non_finite_number(parsed):
        raise Refused(400, "body holds NaN or Infinity, which JSON does not allow")
    problem = shape_problem(parsed)
    if problem is not None:
        raise Refused(400, f"not a payload Slack sends: {problem}")
    return Verified(text, parsed)


def _holds_a_non_finite_number(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_holds_a_non_finite_number(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_a_non_finite_number(item) for item in value)
    return False


def bolt_request(request: Request, verified: Verified) -> AsyncBoltRequest:
    """Bolt's request for a verified body, without parsing it again (a parse costs about a
    tenth of an ack's CPU). Bolt takes a parsed body only in Socket Mode; the raw body and
    the HTTP mode are set after, so the request is the one Bolt would build from the text."""
    built = AsyncBoltRequest(
        body=verified.parsed,
        query=request.query_params,  # type: ignore[arg-type]
        headers=request.headers,  # type: ignore[arg-type]
        mode="socket_mode",
    )
    built.raw_body = verified.text
    built.mode = "http"
    return built


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
            verified = verify(verifier, request, body)
        except Refused as refused:
            log.info("refused a request to /slack/events: %s", refused.why)
            return JSONResponse({"error": refused.why}, status_code=refused.status)
        try:
            to_bolt = bolt_request(request, verified)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            # Bolt reads fields we do not (channel, enterprise, ...) without checking their
            # types; a signed payload of a shape Slack never sends is refused, not a 500.
            why = f"not a payload Slack sends ({type(exc).__name__})"
            log.info("refused a request to /slack/events: %s", why)
            return JSONResponse({"error": why}, status_code=400)
        bolt_response = await bot.app.async_dispatch(to_bolt)
        return to_starlette_response(bolt_response)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    ready = readiness

    async def readyz(request: Request) -> Response:
        nonlocal ready
        if bot.edge.draining:  # before anything else: the edge's threads may be gone
            return JSONResponse({"status": "draining"}, status_code=503)
        if ready is None:  # built at the first probe: the worker is on the edge by then
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
            stop_all(services)
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


def readiness_of(
    bot: SlackBot,
    services: Sequence[BackgroundService],
    *,
    draining: Callable[[], bool] | None = None,
    slack_connected: Callable[[], bool | None] = lambda: None,
    work_processes: Callable[[], str | None] = lambda: None,
) -> Readiness:
    """`/readyz` of a process running `services` beside `bot`'s edge (after
    `background_services`, which puts the worker on the edge); `work_processes` tells why
    `serve`'s `amlbot work` children are not ready, or None."""
    sweeps = next((s for s in services if isinstance(s, NotificationScheduler)), None)

    def worker_ready() -> bool | None:
        worker = bot.edge.worker
        return None if worker is None else worker.ready()

    return Readiness(
        SchemaCheck(bot.edge.core.store),
        draining=draining or (lambda: bot.edge.draining),
        worker_ready=worker_ready,
        sweep_age=sweeps.seconds_since_round if sweeps is not None else lambda: None,
        slack_connected=slack_connected,
        work_processes=work_processes,
    )
