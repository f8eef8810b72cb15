"""`POST /azure/events`: the Event Grid webhook, as starlette routes to mount in the HTTP app.

Authentication: Event Grid cannot sign deliveries to a plain webhook, so each delivery must
carry a shared secret (`AMLBOT_EVENTGRID_SECRET`), either
- as a delivery header `X-Amlbot-Secret: SECRET`, set on the event subscription as a static
  delivery attribute marked secret (preferred: headers stay out of access logs), or
- in the endpoint URL, `https://HOST/azure/events?code=SECRET` (simplest; but the URL shows
  up in access logs, so run uvicorn with `--no-access-log` or filter them).
Without a configured secret the route answers 503 and does nothing, so an open endpoint
never posts messages on anyone's behalf.

In one process (`hand_over` not given) the response is sent after the announcement is
written to the database: a failure answers 500 and Event Grid delivers again (it retries
with backoff for up to 24 hours). With worker processes (`amlbot serve`), the process that
answers Slack's requests only checks the delivery and hands its events to a worker
(`record_job_events`), answering at once: the announcement needs the database and, for a
job's end, Azure, which must not share the CPU with the acks. A failure in the worker is
logged, and the poll sweep, the safety net for what Event Grid never sends, announces the
change at its next round.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.notify.eventgrid import (
    EventGridPayloadError,
    as_events,
    handle_delivery,
    validation_code,
)
from bot.wiring import Core

if TYPE_CHECKING:
    from bot.slack.edge import Delivery, SlackEdge

log = logging.getLogger(__name__)

PATH = "/azure/events"
SECRET_HEADER = "x-amlbot-secret"
MAX_BODY_BYTES = 1024 * 1024  # Event Grid batches are at most 1 MB
EVENTGRID_ORIGIN = "eventgrid.azure.net"


def eventgrid_routes(
    core: Core,
    *,
    secret: str | SecretStr | None,
    on_change: Callable[[], None] | None = None,
    hand_over: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[Route]:
    """Routes for the HTTP app; `on_change` runs after a delivery queued messages (e.g. to
    wake the outbox worker, so the message is in Slack within a second); `hand_over`, when
    given, takes a checked delivery's events instead, to record them elsewhere."""
    wake = on_change or (lambda: None)
    expected = (secret.get_secret_value() if isinstance(secret, SecretStr) else secret) or ""

    def authorised(request: Request) -> bool:
        given = request.headers.get(SECRET_HEADER) or request.query_params.get("code", "")
        return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())

    async def receive(request: Request) -> Response:
        if not expected:
            return JSONResponse(
                {"error": "AMLBOT_EVENTGRID_SECRET is not set; the Event Grid webhook is off"},
                status_code=503,
            )
        if not authorised(request):
            return JSONResponse(
                {"error": "missing or wrong secret (X-Amlbot-Secret header or ?code=)"},
                status_code=401,
            )
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "body over 1 MB"}, status_code=413)
        try:
            events = as_events(json.loads(body))
        except (ValueError, EventGridPayloadError) as exc:
            return JSONResponse({"error": f"not an Event Grid delivery: {exc}"}, status_code=400)
        code = validation_code(events)
        if code is not None:
            log.info("answering Event Grid's subscription validation")
            return JSONResponse({"validationResponse": code})
        if hand_over is not None:
            hand_over([dict(event) for event in events])
            return JSONResponse({"accepted": len(events)})
        now = core.clock.now()
        announced = await run_in_threadpool(handle_delivery, core, events, now)
        if announced:
            wake()
        return JSONResponse({"announced": announced})

    async def handshake(request: Request) -> Response:
        """CloudEvents 1.0 abuse protection: Event Grid asks with OPTIONS before delivering."""
        if not authorised(request):
            return Response(status_code=401)
        origin = request.headers.get("webhook-request-origin", EVENTGRID_ORIGIN)
        return Response(status_code=200, headers={"WebHook-Allowed-Origin": origin})

    return [
        Route(PATH, receive, methods=["POST"]),
        Route(PATH, handshake, methods=["OPTIONS"]),
    ]


def record_job_events(edge: SlackEdge, delivery: Delivery) -> None:
    """In a worker process: the events of a delivery the webhook handed over."""
    if handle_delivery(edge.core, delivery.body["events"], edge.core.clock.now()):
        edge.on_core_done()  # deliver the announcements now, not at the next poll
