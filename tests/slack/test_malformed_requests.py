"""Requests Slack never sends, from anyone on the internet or a confused proxy: each gets a
4xx, the log gets one line without the body and without a traceback, nothing is stored."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy import func, select

from approvals.tables import AuditRow, RequestRow
from tests.fakes.slack_signing import FORM, JSON
from tests.slack.conftest import ALICE, SIGNING_SECRET, SlackHarness

MARKER = "do-not-log-this-reason"


def signature(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
    try:
        connection.request("POST", "/slack/events", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def signed(body: bytes, content_type: str = FORM, **extra: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(body, timestamp),
        **extra,
    }


def command_body(text: str) -> bytes:
    return f"command=%2Faml&user_id={ALICE}&team_id=T0AMLTEST&text={quote(text)}".encode()


def counts(harness: SlackHarness) -> tuple[int, int]:
    with harness.core.store.transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(RequestRow)) or 0,
            session.scalar(select(func.count()).select_from(AuditRow)) or 0,
        )


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """At DEBUG before the app is built: Bolt copies the root level into its loggers."""
    caplog.set_level(logging.DEBUG)
    yield caplog


def assert_quiet(logs: pytest.LogCaptureFixture) -> None:
    assert not [r for r in logs.records if r.exc_info], "a traceback was logged"
    assert not [r for r in logs.records if MARKER in r.getMessage()], "the body was logged"
    assert max((len(r.getMessage()) for r in logs.records), default=0) < 2000


REQUEST = command_body(f"access request gpu-cluster --reason {MARKER}")
NOT_JSON = b"payload=%7Bnot-json"
A_LIST = b"payload=%5B1%2C2%5D"
NOT_UTF8 = b"text=\xff\xfe"
# Each case, made when the test runs (a signature made at import could go stale):
# (body, headers, the status it must get).
CASES: dict[str, Callable[[], tuple[bytes, dict[str, str], int]]] = {
    "timestamp is not a number": lambda: (
        REQUEST,
        {**signed(REQUEST), "X-Slack-Request-Timestamp": "soon"},
        401,
    ),
    "no signature headers": lambda: (REQUEST, {"Content-Type": FORM}, 401),
    "signature from another secret": lambda: (
        REQUEST,
        {**signed(REQUEST), "X-Slack-Signature": signature(REQUEST, "1", "other")},
        401,
    ),
    "payload is not JSON": lambda: (NOT_JSON, signed(NOT_JSON), 400),
    "payload is a JSON list": lambda: (A_LIST, signed(A_LIST), 400),
    "event body is a JSON list": lambda: (b'["event"]', signed(b'["event"]', JSON), 400),
    "event body is not JSON": lambda: (b'{"type": ', signed(b'{"type": ', JSON), 400),
    "body is not UTF-8": lambda: (NOT_UTF8, signed(NOT_UTF8), 400),
    "retry number is not a number": lambda: (
        REQUEST,
        signed(REQUEST, **{"X-Slack-Retry-Num": "\u00b2"}),
        400,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_request_is_refused_quietly_and_changes_nothing(
    logs: pytest.LogCaptureFixture, harness: SlackHarness, case: str
) -> None:
    body, headers, status = CASES[case]()
    before = counts(harness)
    assert send(harness.url, body, headers)[0] == status
    assert counts(harness) == before
    assert_quiet(logs)


def test_a_forged_megabyte_is_refused_at_the_edge_and_not_logged(
    logs: pytest.LogCaptureFixture, harness: SlackHarness
) -> None:
    body = command_body(MARKER * (1024 * 1024 // len(MARKER)))
    headers = {**signed(REQUEST), "Content-Type": FORM}  # the signature is for another body
    assert send(harness.url, body, headers)[0] == 413
    assert_quiet(logs)


def test_a_forged_small_request_is_refused_without_logging_its_body(
    logs: pytest.LogCaptureFixture, harness: SlackHarness
) -> None:
    headers = {**signed(REQUEST), "X-Slack-Signature": "v0=" + "0" * 64}
    assert send(harness.url, REQUEST, headers)[0] == 401
    assert_quiet(logs)


def test_the_largest_body_slack_sends_is_well_under_the_cap() -> None:
    from bot.slack.http import MAX_BODY_BYTES

    assert MAX_BODY_BYTES >= 256 * 1024


def test_a_well_formed_signed_command_still_goes_through(harness: SlackHarness) -> None:
    assert harness.command(ALICE, "whoami").status == 200
    assert "You are *alice*." in harness.answer_to(ALICE, containing="You are")
