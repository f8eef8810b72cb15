"""Injected failures, and slack_sdk's retry handlers honouring them.

slack_sdk retries a 429 only when `RateLimitErrorRetryHandler` is installed; it then
sleeps `Retry-After` seconds plus up to one second of jitter.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack_api import FakeSlack
from tests.slack_fake.conftest import BOB, CHANNEL, TOKEN


def test_429_carries_retry_after_and_ratelimited(client: WebClient, slack: FakeSlack) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="hi")

    response = raised.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.data == {"ok": False, "error": "ratelimited"}
    assert slack.messages_in(CHANNEL) == []


def test_rate_limit_retry_handler_waits_retry_after_then_succeeds(slack: FakeSlack) -> None:
    client = WebClient(
        token=TOKEN,
        base_url=slack.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    started = time.monotonic()
    response = client.chat_postMessage(channel=CHANNEL, text="hi")
    elapsed = time.monotonic() - started

    assert response["ok"] is True
    assert elapsed >= 1.0
    assert [c.status for c in slack.calls("chat.postMessage")] == [429, 200]
    assert [m.text for m in slack.messages_in(CHANNEL)] == ["hi"]


def test_rate_limit_retry_handler_gives_up_after_its_retries(slack: FakeSlack) -> None:
    client = WebClient(
        token=TOKEN,
        base_url=slack.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next("chat.postMessage", status=429, retry_after=0, times=2)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="hi")

    assert raised.value.response.status_code == 429
    assert len(slack.calls("chat.postMessage")) == 2


def test_async_client_with_rate_limit_handler_waits_retry_after(slack: FakeSlack) -> None:
    async def post() -> tuple[bool, float]:
        client = AsyncWebClient(
            token=TOKEN,
            base_url=slack.base_url,
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
        )
        started = time.monotonic()
        response = await client.chat_postMessage(channel=CHANNEL, text="hi")
        return bool(response["ok"]), time.monotonic() - started

    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    ok, elapsed = asyncio.run(post())

    assert ok and elapsed >= 1.0
    assert [c.status for c in slack.calls("chat.postMessage")] == [429, 200]


@pytest.mark.parametrize(
    ("status", "error"), [(500, "internal_error"), (503, "service_unavailable")]
)
def test_server_errors_fail_the_call(
    client: WebClient, slack: FakeSlack, status: int, error: str
) -> None:
    slack.fail_next("chat.postMessage", status=status)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="hi")

    assert raised.value.response.status_code == status
    assert raised.value.response["error"] == error


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_retry_handler_recovers(slack: FakeSlack, status: int) -> None:
    client = WebClient(
        token=TOKEN,
        base_url=slack.base_url,
        retry_handlers=[
            ServerErrorRetryHandler(
                max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
            )
        ],
    )
    slack.fail_next("chat.postMessage", status=status)

    assert client.chat_postMessage(channel=CHANNEL, text="hi")["ok"] is True
    assert [c.status for c in slack.calls("chat.postMessage")] == [status, 200]


def test_fail_next_touches_only_the_named_method(client: WebClient, slack: FakeSlack) -> None:
    slack.fail_next("chat.update", status=500)

    assert client.chat_postMessage(channel=CHANNEL, text="hi")["ok"] is True
    assert slack.calls("chat.update") == []


def test_fail_next_with_a_slack_error_answers_http_200(client: WebClient, slack: FakeSlack) -> None:
    slack.fail_next("chat.postMessage", status=200, error="fatal_error")

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="hi")

    assert (raised.value.response.status_code, raised.value.response["error"]) == (
        200,
        "fatal_error",
    )
    assert client.chat_postMessage(channel=CHANNEL, text="again")["ok"] is True


def test_fail_permanently_breaks_every_call_on_the_channel(
    client: WebClient, slack: FakeSlack
) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="card")
    slack.fail_permanently(CHANNEL, "is_archived")

    with pytest.raises(SlackApiError) as post_refused:
        client.chat_postMessage(channel=CHANNEL, text="again")
    with pytest.raises(SlackApiError) as update_refused:
        client.chat_update(channel=CHANNEL, ts=posted["ts"], text="edit")

    assert post_refused.value.response["error"] == "is_archived"
    assert update_refused.value.response["error"] == "is_archived"

    slack.clear_failures()
    assert client.chat_postMessage(channel=CHANNEL, text="back")["ok"] is True


def test_fail_permanently_defaults_to_channel_not_found(
    client: WebClient, slack: FakeSlack
) -> None:
    slack.fail_permanently(CHANNEL)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="hi")

    assert raised.value.response["error"] == "channel_not_found"


def test_response_url_can_be_rate_limited_too(slack: FakeSlack) -> None:
    url = slack.response_url(CHANNEL, BOB)
    slack.fail_next("response_url", status=429, retry_after=1)

    response = WebhookClient(url).send(text="hi")

    assert response.status_code == 429
    assert response.headers["Retry-After"] in ("1", ["1"])
    assert slack.ephemerals(user=BOB) == []


def test_an_outage_fails_every_method_until_cleared(client: WebClient, slack: FakeSlack) -> None:
    slack.fail_every_call(status=429, retry_after=5)
    for _ in range(3):
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel=CHANNEL, text="hi")
        assert raised.value.response.headers["Retry-After"] == "5"
    slack.fail_every_call(status=500)
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts="1.000001", text="hi")
    assert raised.value.response.status_code == 500

    slack.clear_failures()

    assert client.chat_postMessage(channel=CHANNEL, text="hi")["ok"] is True
