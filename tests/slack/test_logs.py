"""Logs of `serve` and `work`: one JSON object per line, each record of an inbox item's
handling carrying the item's correlation id, and no token or secret in any of them."""

from __future__ import annotations

import io
import logging

from approvals import inbox, inbox_accept
from bot.slack.views.common import APPROVE_ACTION
from bot.wiring import Core
from bot.work import InboxWorker
from tests.json_logs import entries
from tests.slack.conftest import ALICE, BOB, BOT_TOKEN, SIGNING_SECRET, SlackHarness, wait_for

log = logging.getLogger("tests.handler")


def test_what_an_inbox_item_logs_carries_its_delivery_key(
    sqlite_core: Core, json_logs: io.StringIO
) -> None:
    def handle(item: inbox.InboxItem) -> None:
        log.info("handling %s", item.handler)
        raise RuntimeError("Azure said no")

    with sqlite_core.store.transaction() as session:
        inbox_accept.accept(session, "event:Ev0AMLBOT1", "test.fails", {}, sqlite_core.clock.now())
    worker = InboxWorker(sqlite_core.store, sqlite_core.clock, {"test.fails": handle}, poll=0.02)
    worker.start()
    try:
        wait_for(lambda: "failed (error id" in json_logs.getvalue() or None, what="the failure")
    finally:
        worker.stop(grace=1)
    log.info("after the item")

    logged = entries(json_logs)
    handling = next(e for e in logged if e["message"] == "handling test.fails")
    failed = next(e for e in logged if "failed (error id" in e["message"])
    assert handling["correlation_id"] == failed["correlation_id"] == "event:Ev0AMLBOT1"
    assert handling["level"] == "INFO" and handling["logger"] == "tests.handler"
    assert "RuntimeError: Azure said no" in failed["exception"]
    after = next(e for e in logged if e["message"] == "after the item")
    assert "correlation_id" not in after


def test_a_whole_scenario_logs_json_lines_without_the_token_or_the_signing_secret(
    harness: SlackHarness, json_logs: io.StringIO
) -> None:
    harness.command(ALICE, 'access request gpu-cluster --for 2h --reason "train"')
    request_id = harness.request_id(harness.answer_to(ALICE, containing="waiting"))
    harness.click(BOB, APPROVE_ACTION, request_id)
    harness.answer_to(BOB, containing="Approved")
    harness.command(ALICE, "frobnicate")
    harness.answer_to(ALICE, containing="Unknown command")

    text = json_logs.getvalue()
    logged = entries(json_logs)  # every line is one JSON object
    assert len(logged) > 10  # DEBUG: the SDKs' own request logs too
    assert any(e.get("correlation_id", "").startswith("slash_command:") for e in logged)
    assert BOT_TOKEN not in text
    assert SIGNING_SECRET not in text


def test_a_socket_mode_connection_slack_refuses_is_one_warning_line_per_retry(
    json_logs: io.StringIO,
) -> None:
    """slack_sdk's own client, retrying a refused websocket by itself, logs through the
    logger `serve` gives it: a WARNING naming the error, never an ERROR with a traceback
    (one each retry while Slack is unreachable would page someone for a blip)."""
    import asyncio
    import socket

    from slack_sdk.socket_mode.aiohttp import SocketModeClient
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.serve import _socket_mode_logger

    with socket.socket() as unused:  # a port nothing listens on: the connection is refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    async def connect_twice() -> None:
        client = SocketModeClient(
            app_token="xapp-1-A0-0-test",
            logger=_socket_mode_logger(),
            web_client=AsyncWebClient(token="xoxb-test"),
            ping_interval=0.05,
        )
        client.wss_uri = f"ws://127.0.0.1:{port}/link"
        connecting = asyncio.ensure_future(client.connect())
        try:
            for _ in range(200):
                if json_logs.getvalue().count("Failed to connect") >= 2:
                    break
                await asyncio.sleep(0.02)
        finally:
            connecting.cancel()
            await client.close()

    asyncio.run(connect_twice())
    failures = [e for e in entries(json_logs) if "Failed to connect" in e["message"]]
    assert len(failures) >= 2
    assert {e["level"] for e in failures} == {"WARNING"}
    assert not any("exception" in e for e in failures)
    assert str(port) in failures[0]["message"]  # the error itself is still named


def test_only_the_retried_failures_named_lose_their_traceback() -> None:
    from bot.logs import RetriedFailures

    quiet = RetriedFailures("Failed to connect (error:")
    refused = ConnectionRefusedError("refused")
    exc_info = (ConnectionRefusedError, refused, None)
    retried = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "Failed to connect (error: e)", (), exc_info
    )
    other = logging.LogRecord("x", logging.ERROR, __file__, 1, "Failed to send", (), exc_info)
    assert quiet.filter(retried) and quiet.filter(other)  # filtered records are still logged
    assert (retried.levelname, retried.exc_info) == ("WARNING", None)
    assert (other.levelname, other.exc_info) == ("ERROR", exc_info)
