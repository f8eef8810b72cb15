"""Message metadata, `conversations.history` / `.replies`, the scopes they need, and a call
whose answer is lost after it took effect: what the outbox's in-doubt look-up relies on."""

from __future__ import annotations

import time
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import ALL_SCOPES, FakeSlack
from tests.slack_fake.conftest import ALICE, CHANNEL, DEMO_USERS, TOKEN

TAG = {"event_type": "amlbot_outbox_post", "event_payload": {"outbox_id": 7, "step": "dm"}}


def test_history_is_newest_first_without_thread_replies_and_metadata_on_request(
    client: WebClient,
) -> None:
    first = client.chat_postMessage(channel=CHANNEL, text="card", metadata=TAG)
    client.chat_postMessage(channel=CHANNEL, text="in thread", thread_ts=first["ts"])
    client.chat_postMessage(channel=CHANNEL, text="later")

    plain = client.conversations_history(channel=CHANNEL)
    tagged = client.conversations_history(channel=CHANNEL, include_all_metadata=True)

    assert [m["text"] for m in plain["messages"]] == ["later", "card"]
    assert all("metadata" not in m for m in plain["messages"])
    assert tagged["messages"][1]["metadata"] == TAG


def test_history_pages_and_honours_oldest(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel=CHANNEL, text=f"m{i}")["ts"] for i in range(5)]

    page = client.conversations_history(channel=CHANNEL, oldest=stamps[0], limit=2)
    rest = client.conversations_history(
        channel=CHANNEL, oldest=stamps[0], limit=2, cursor=page["response_metadata"]["next_cursor"]
    )

    assert [m["text"] for m in page["messages"]] == ["m4", "m3"] and page["has_more"]
    assert [m["text"] for m in rest["messages"]] == ["m2", "m1"] and not rest["has_more"]


def test_replies_list_the_parent_then_the_thread(client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="card")
    for text in ("approved", "done"):
        client.chat_postMessage(channel=CHANNEL, text=text, thread_ts=parent["ts"], metadata=TAG)

    thread = client.conversations_replies(
        channel=CHANNEL, ts=parent["ts"], include_all_metadata=True
    )

    assert [m["text"] for m in thread["messages"]] == ["card", "approved", "done"]
    assert thread["messages"][2]["metadata"] == TAG
    with pytest.raises(SlackApiError) as raised:
        client.conversations_replies(channel=CHANNEL, ts="1.000001")
    assert raised.value.response["error"] == "thread_not_found"


@pytest.mark.parametrize(
    "bad", [{"event_type": "has space", "event_payload": {}}, {"event_type": "x"}, "text"]
)
def test_malformed_metadata_is_refused(client: WebClient, bad: Any) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.api_call("chat.postMessage", json={"channel": CHANNEL, "text": "x", "metadata": bad})
    assert raised.value.response["error"] == "invalid_metadata_format"


def test_reading_history_without_its_scope_is_missing_scope() -> None:
    with FakeSlack(
        token=TOKEN, channels={CHANNEL}, users=DEMO_USERS, scopes=ALL_SCOPES - {"im:history"}
    ) as slack:
        client = WebClient(token=TOKEN, base_url=slack.base_url)
        client.chat_postMessage(channel=ALICE, text="hello")
        client.conversations_history(channel=CHANNEL)  # public: channels:history is there

        with pytest.raises(SlackApiError) as raised:
            client.conversations_history(channel=slack.dm_channel_id(ALICE))

        assert raised.value.response["error"] == "missing_scope"
        assert raised.value.response["needed"] == "im:history"
        headers = {k.lower(): v for k, v in raised.value.response.headers.items()}
        granted = headers["x-oauth-scopes"]
        assert "im:history" not in str(granted) and "channels:history" in str(granted)


def test_a_lost_answer_still_posts(client: WebClient, slack: FakeSlack) -> None:
    slack.lose_answer("chat.postMessage", status=500)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="did it go?")

    assert raised.value.response.status_code == 500
    assert [m.text for m in slack.messages_in(CHANNEL)] == ["did it go?"]


def test_a_late_answer_keeps_the_caller_waiting_but_not_slack(
    client: WebClient, slack: FakeSlack
) -> None:
    slack.lose_answer("chat.postMessage", delay=1.0, status=None)

    started = time.monotonic()
    posted = client.chat_postMessage(channel=CHANNEL, text="slow")
    waited = time.monotonic() - started

    assert posted["ok"] and waited >= 1.0
    assert [m.text for m in slack.messages_in(CHANNEL)] == ["slow"]
