"""No unsigned payload gets past the Slack edge: random and mangled slash commands,
clicks, modal submissions (every callback id) and App Home events, through the real app
on uvicorn, each get a 4xx, log no traceback and change nothing."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from approvals.tables import AuditRow, RequestRow
from bot.slack.views.common import (
    APPROVE_ACTION,
    DATASTORE_MODAL,
    DENY_ACTION,
    DENY_MODAL,
    JOB_MODAL,
)
from tests.fakes.slack_signing import (
    app_home_opened_payload,
    block_actions_payload,
    event_body,
    interactive_body,
    post_signed,
    slash_command_payload,
    view_submission_payload,
)
from tests.slack.conftest import ALICE, BOB, CHANNEL, SIGNING_SECRET, STRANGER, SlackHarness

NASTY_TEXT = st.sampled_from(
    ["", "\x00", "\udcff", "9" * 40, "#0", "-1", "²", "\u202e", "<!channel>", "x" * 5000, "{}"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    NASTY_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
CALLBACKS = [DENY_MODAL, JOB_MODAL, DATASTORE_MODAL, "amlbot.unknown"]
ACTIONS = [APPROVE_ACTION, DENY_ACTION, "amlbot.idle.fix", "amlbot.unknown"]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from paths(inner, (*prefix, index))


def mangled(draw: st.DrawFn, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with up to four of its values (at any depth) replaced by random JSON."""
    payload = json.loads(json.dumps(payload))
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.sampled_from([p for p in paths(payload) if p]))
        target = payload
        for step in where[:-1]:
            target = target[step]
        target[where[-1]] = draw(JSON_VALUES)
    return payload


def view_values(draw: st.DrawFn) -> dict[str, Any]:
    blocks = ["reason", "compute", "environment", "command", "name", "kind", "account"]
    return {
        block: {
            block: {
                "type": "plain_text_input",
                "value": draw(st.one_of(NASTY_TEXT, st.text(max_size=20))),
            }
        }
        for block in draw(st.lists(st.sampled_from(blocks), max_size=4, unique=True))
    }


@st.composite
def slack_bodies(draw: st.DrawFn, response_url: Callable[[str, str], str]) -> str:
    user = draw(st.sampled_from([ALICE, BOB, STRANGER]))
    kind = draw(st.sampled_from(["command", "click", "submit", "home"]))
    url = response_url(CHANNEL, user)
    if kind == "command":
        text = draw(
            st.one_of(
                NASTY_TEXT,
                st.text(max_size=60),
                st.sampled_from(["job submit", "datastore register", "approve 1"]),
            )
        )
        fields = slash_command_payload(text, user_id=user, response_url=url)
        # A lone surrogate goes out as its UTF-8-like bytes, which are not UTF-8.
        return urlencode(mangled(draw, fields), errors="surrogatepass")  # type: ignore[arg-type]
    if kind == "click":
        payload = block_actions_payload(
            action_id=draw(st.sampled_from(ACTIONS)),
            user_id=user,
            response_url=url,
            value=draw(st.one_of(NASTY_TEXT, st.sampled_from(["1", "2", "999999999"]))),
        )
        return interactive_body(mangled(draw, payload))
    if kind == "submit":
        metadata = draw(
            st.one_of(
                NASTY_TEXT,
                st.builds(
                    json.dumps,
                    st.fixed_dictionaries(
                        {"request_id": SCALARS, "ws": st.sampled_from(["demo", "nope", "\x00"])}
                    ),
                ),
            )
        )
        payload = view_submission_payload(
            callback_id=draw(st.sampled_from(CALLBACKS)),
            user_id=user,
            values=view_values(draw),
            private_metadata=metadata,
        )
        return interactive_body(mangled(draw, payload))
    return event_body(mangled(draw, app_home_opened_payload(user_id=user)))


def counts(harness: SlackHarness) -> tuple[int, int]:
    with harness.core.store.transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(RequestRow)) or 0,
            session.scalar(select(func.count()).select_from(AuditRow)) or 0,
        )


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)  # before the app is built: Bolt copies the root level
    return caplog


@pytest.mark.timeout(600)
def test_no_unsigned_payload_changes_anything(
    logs: pytest.LogCaptureFixture, harness: SlackHarness
) -> None:
    before = counts(harness)

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(slack_bodies(harness.slack.response_url))
    def check(body: str) -> None:
        response = post_signed(
            harness.url, "/slack/events", body, secret=SIGNING_SECRET, bad_signature=True
        )
        assert response.status in {400, 401, 413}, body[:300]

    check()
    time.sleep(0.5)
    assert counts(harness) == before
    assert not tracebacks(logs)


@pytest.mark.timeout(600)
def test_no_signed_payload_of_a_wrong_shape_breaks_anything(
    logs: pytest.LogCaptureFixture, harness: SlackHarness
) -> None:
    """Signed, so it passes the signature: whatever it holds, the answer is not a 5xx, and
    nothing logs a traceback, neither the edge nor the worker that handles what was kept."""

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(slack_bodies(harness.slack.response_url))
    def check(body: str) -> None:
        response = post_signed(harness.url, "/slack/events", body, secret=SIGNING_SECRET)
        assert response.status < 500, (response.status, body[:300])

    check()
    worker = harness.bot.edge.worker
    assert worker is not None
    deadline = time.monotonic() + 30
    while (worker.in_flight() or pending_items(harness)) and time.monotonic() < deadline:
        harness.clock.advance(timedelta(seconds=40))  # past retries' backoff
        worker.wake()
        time.sleep(0.1)
    assert not tracebacks(logs)


def pending_items(harness: SlackHarness) -> int:
    from approvals.tables import InboxRow

    with harness.core.store.transaction() as session:
        return (
            session.scalar(
                select(func.count()).select_from(InboxRow).where(InboxRow.status == "pending")
            )
            or 0
        )


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_a_signed_payload_holding_a_number_json_does_not_allow_is_refused_whole(
    harness: SlackHarness, number: str
) -> None:
    """Python's parser reads NaN and Infinity; PostgreSQL's json refuses them, and kept in
    the inbox one failed the insert of every arrival batched with it (a 500 for each)."""
    before = counts(harness)
    user = f'{{"id": "{ALICE}", "username": {number}}}'
    payload = f'{{"type": "block_actions", "user": {user}, "actions": []}}'
    body = urlencode({"payload": payload})
    response = post_signed(harness.url, "/slack/events", body, secret=SIGNING_SECRET)
    assert response.status == 400
    assert "NaN or Infinity" in response.body
    assert counts(harness) == before
