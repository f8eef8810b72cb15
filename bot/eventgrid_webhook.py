"""`POST /azure/events`: the Event Grid webhook, as starlette routes to mount in the HTTP app.

Authentication: Event Grid cannot sign deliveries to a plain webhook, so each delivery must
carry a shared secret (`AMLBOT_EVENTGRID_SECRET`), either
- as a delivery header `X-Amlbot-Secret: SECRET`, set on the event subscription as a static
  delivery attribute marked secret (preferred: headers stay out of access logs), or
- in the endpoint URL, `https://HOST/azure/events?code=SECRET` (simplest; but the URL shows
  up in access logs, so run uvicorn with `--no-access-log` or filter them).
Without a configured secret the route answers 503 and does nothing, so an open endpoint
never posts messages on anyone's behalf.

Each checked delivery is kept in the inbox (`approvals/inbox.py`) before the 200, so a
delivery Event Grid was told we accepted is never lost: a worker records its events
(`job_events_handler`; the database and, for a job's end, Azure). When the inbox cannot
take it, the answer is 503 and Event Grid delivers again (it retries with backoff for up
to 24 hours). Its event ids make the inbox key, so a redelivery is kept once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from approvals import inbox_accept
from approvals.following.eventgrid import (
    EventGridPayloadError,
    as_events,
    handle_delivery,
    validation_code,
)
from approvals.inbox import InboxItem
from bot.wiring import Core

log = logging.getLogger(__name__)

PATH = "/azure/events"
EVENTGRID_HANDLER = "eventgrid.deliveries"
SECRET_HEADER = "x-amlbot-secret"
MAX_BODY_BYTES = 1024 * 1024  # Event Grid batches are at most 1 MB
EVENTGRID_ORIGIN = "eventgrid.azure.net"


def eventgrid_routes(
    core: Core,
    *,
    secret: str | SecretStr | None,
    on_accepted: Callable[[], None] | None = None,
) -> list[Route]:
    """Routes for the HTTP app; `on_accepted` runs after a delivery was kept (e.g. to wake
    a worker in this process)."""
    wake = on_accepted or (lambda: None)
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
        try:
            await run_in_threadpool(keep_delivery, core, [dict(event) for event in events])
        except Exception:
            log.exception("could not keep an Event Grid delivery; asking for it again")
            return JSONResponse({"error": "not accepted; deliver again"}, status_code=503)
        wake()
        return JSONResponse({"accepted": len(events)})

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


def keep_delivery(core: Core, events: list[dict[str, Any]]) -> bool:
    """Keep a delivery's events in the inbox; False if it was kept before."""
    ids = sorted(str(event.get("id", "")) for event in events)
    key = "eventgrid:" + hashlib.sha256("\n".join(ids).encode()).hexdigest()
    if not any(ids):
        key = f"eventgrid:unkeyed:{uuid.uuid4().hex}"
    return inbox_accept.keep(
        core.store, key, EVENTGRID_HANDLER, {"events": events}, core.clock.now()
    )


def job_events_handler(core: Core, on_change: Callable[[], None]) -> Callable[[InboxItem], None]:
    """The inbox handler of kept deliveries: announce what changed, then wake the outbox."""

    def record_job_events(item: InboxItem) -> None:
        if handle_delivery(
            core, item.payload["events"], core.clock.now(), idle_spend=core.service.idle_spend
        ):
            on_change()

    return record_job_events
