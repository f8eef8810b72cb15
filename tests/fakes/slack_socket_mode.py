"""Slack's side of Socket Mode, beside a `FakeSlack`: `apps.connections.open` and the
websocket it hands out, on 127.0.0.1. Tests send envelopes the way Slack does and read
the acknowledgements the app sends back.

    with FakeSlack(token="xoxb-test") as slack, FakeSocketMode(slack) as socket_mode:
        # the app runs with SLACK_API_URL=slack.base_url, SLACK_APP_TOKEN=socket_mode.app_token
        wait_for(lambda: socket_mode.connected)
        envelope_id = socket_mode.send("slash_commands", slash_command_payload(...))
        wait_for(lambda: socket_mode.acks(envelope_id))

What it models of Slack (https://docs.slack.dev/apis/events-api/using-socket-mode/):
`apps.connections.open` takes only the app-level token (a bot token gets
`not_allowed_token_type`, another app token `invalid_auth`) and answers a single-use
websocket URL; a connection first receives `hello`; each delivery is an envelope
`{"envelope_id", "type", "payload", "accepts_response_payload"}` and the app acks it
with `{"envelope_id", "payload"?}`; before Slack drops a connection it sends
`{"type": "disconnect", ...}` and the app opens a new one. Not modelled: redelivery of an
unacked envelope, and Slack's 3 s ack deadline (tests assert on the acks instead).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import WSMsgType, web

from tests.fakes.serving import ServesWhileOpen
from tests.fakes.slack_api import FakeSlack, JSONDict

EnvelopeType = Literal["slash_commands", "interactive", "events_api"]

DEFAULT_APP_TOKEN = "xapp-1-A0AMLBOT0-1000000000001-fakesocketmode"
SEND_TIMEOUT_SECONDS = 5.0
# Interactions whose ack may carry a response (errors on a form, options for a select).
_ANSWERED_INTERACTIONS = frozenset({"view_submission", "block_suggestion"})


@dataclass(frozen=True)
class Ack:
    """One acknowledgement the app sent over the websocket."""

    envelope_id: str
    payload: JSONDict | None  # what `ack(...)` was given; None for a bare ack
    connection: int  # 1 for the first connection the app opened, 2 after a reconnect


@dataclass
class _Connection:
    number: int
    websocket: web.WebSocketResponse


class FakeSocketMode(ServesWhileOpen):
    """The Socket Mode endpoint; use as a context manager (or `start()`/`stop()`) after
    the `FakeSlack` it extends has started."""

    def __init__(self, slack: FakeSlack, *, app_token: str = DEFAULT_APP_TOKEN) -> None:
        if not app_token.startswith("xapp-"):
            raise ValueError(f"an app-level token starts with xapp-, not {app_token[:5]!r}")
        self.slack = slack
        self.app_token = app_token
        self._lock = threading.Lock()
        self._tickets: set[str] = set()
        self._open: list[_Connection] = []
        self._opened = 0
        self._acks: list[Ack] = []
        self._sent: list[JSONDict] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeSocketMode:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="fake-socket-mode", daemon=True
        )
        self._thread.start()
        self._run(self._start_server())
        self.slack.add_method("apps.connections.open", self._connections_open, token=self.app_token)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._run(self._stop_server())
        self._run(_finish_the_rest())
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = None
        self._thread = None

    # ---- acting as Slack ---------------------------------------------------------------

    def send(
        self,
        envelope_type: EnvelopeType,
        payload: JSONDict,
        *,
        accepts_response_payload: bool | None = None,
        envelope_id: str | None = None,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> str:
        """Deliver one envelope on the newest open connection; returns its envelope id.

        Sending the same `envelope_id` again is a redelivery. `accepts_response_payload`
        defaults to what Slack sets for the type: true for slash commands, form
        submissions and select options. `LookupError` when the app is not connected."""
        if accepts_response_payload is None:
            accepts_response_payload = envelope_type == "slash_commands" or (
                envelope_type == "interactive" and payload.get("type") in _ANSWERED_INTERACTIONS
            )
        envelope: JSONDict = {
            "envelope_id": envelope_id or new_envelope_id(),
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if envelope_type == "events_api":
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = retry_reason or ""
        self._send_message(envelope)
        with self._lock:
            self._sent.append(envelope)
        return str(envelope["envelope_id"])

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does every few hours (`refresh_requested`)
        or before a deploy (`warning`); the old connection stays open until the app
        closes it."""
        self._send_message(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        )

    # ---- inspecting ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._lock:
            return bool(self._open)

    @property
    def connections_opened(self) -> int:
        """Websocket connections the app has opened so far (1 until it reconnects)."""
        with self._lock:
            return self._opened

    def acks(self, envelope_id: str | None = None) -> list[Ack]:
        """Acknowledgements received, oldest first; optionally those of one envelope."""
        with self._lock:
            return [a for a in self._acks if envelope_id is None or a.envelope_id == envelope_id]

    def sent(self) -> list[JSONDict]:
        """Envelopes delivered to the app, oldest first."""
        with self._lock:
            return list(self._sent)

    # ---- Web API method (on FakeSlack's server threads) --------------------------------

    def _connections_open(self, params: JSONDict) -> JSONDict:
        ticket = secrets.token_hex(16)
        with self._lock:
            self._tickets.add(ticket)
        url = f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.slack.app_id}"
        return {"url": url}

    # ---- the websocket server (on its own event loop) ----------------------------------

    def _run(self, coroutine: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("FakeSocketMode is not started; use `with FakeSocketMode(...)`")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(
            timeout=SEND_TIMEOUT_SECONDS
        )

    async def _start_server(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._serve_connection)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        self._port = int(listener.getsockname()[1])
        await web.SockSite(runner, listener).start()
        self._runner = runner

    async def _stop_server(self) -> None:
        with self._lock:
            still_open = [c.websocket for c in self._open]
        for websocket in still_open:
            await websocket.close(code=1001, message=b"fake Slack is stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_connection(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)  # a URL from apps.connections.open is single-use
        if not valid:
            return web.Response(status=401, text="invalid or used ticket")
        websocket = web.WebSocketResponse(autoping=True)
        await websocket.prepare(request)
        with self._lock:
            self._opened += 1
            connection = _Connection(self._opened, websocket)
            self._open.append(connection)
        try:
            await websocket.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._open),
                    "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": self.slack.app_id},
                }
            )
            async for message in websocket:
                if message.type == WSMsgType.TEXT:
                    self._record_ack(connection.number, message.data)
        finally:
            with self._lock:
                self._open.remove(connection)
        return websocket

    def _record_ack(self, connection: int, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return  # Slack ignores what is not an ack
        if not isinstance(message, dict) or "envelope_id" not in message:
            return
        payload = message.get("payload")
        ack = Ack(
            str(message["envelope_id"]), payload if isinstance(payload, dict) else None, connection
        )
        with self._lock:
            self._acks.append(ack)

    def _send_message(self, message: JSONDict) -> None:
        with self._lock:
            if not self._open:
                raise LookupError("the app has no Socket Mode connection open")
            websocket = self._open[-1].websocket
        self._run(websocket.send_str(json.dumps(message)))


async def _finish_the_rest() -> None:
    """End what the server's cleanup left on the loop (a client that connected again while
    it stopped): the loop is closed next, and a socket it never closed would be found by
    the garbage collector during some later test, and fail that one."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    # A connection accepted while the server stopped may have no handler yet, so nothing
    # above closes it (seen on a loaded machine: the app reconnects the moment its
    # websocket closes). The selector loop's registry of its transports (private, so read
    # with a default) is the only list of every connection.
    # One already closing may be waiting, for ever, to flush what it has to write: aborted
    # too, its socket is closed at once.
    transports: Any = getattr(asyncio.get_running_loop(), "_transports", {})
    for transport in list(transports.values()):
        if transport is not None:
            transport.abort()
    for _ in range(3):  # the transports' connection_lost callbacks, scheduled by the above
        await asyncio.sleep(0)


def new_envelope_id() -> str:
    """A fresh envelope id in Slack's form (a UUID)."""
    return str(uuid.uuid4())
