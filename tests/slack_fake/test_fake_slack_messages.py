"""Messages, threads, edits, ephemerals, DMs and people, as real Slack answers them."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import FakeSlack
from tests.slack_fake.conftest import ALICE, BOB, CHANNEL


def test_post_message_returns_channel_and_increasing_unique_ts(
    client: WebClient, slack: FakeSlack
) -> None:
    stamps = [client.chat_postMessage(channel=CHANNEL, text=f"m{i}")["ts"] for i in range(5)]

    assert len(set(stamps)) == 5
    assert stamps == sorted(stamps, key=lambda ts: tuple(int(p) for p in ts.split(".")))
    assert [m.text for m in slack.messages_in(CHANNEL)] == ["m0", "m1", "m2", "m3", "m4"]
    assert slack.last_message(CHANNEL).text == "m4"


def test_reply_in_thread_keeps_thread_ts(client: WebClient, slack: FakeSlack) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="card")

    client.chat_postMessage(channel=CHANNEL, text="decided", thread_ts=parent["ts"])

    (reply,) = slack.replies(CHANNEL, parent["ts"])
    assert reply.text == "decided"
    assert reply.thread_ts == parent["ts"]


def test_unknown_channel_is_channel_not_found(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C0NOWHERE", text="hi")

    assert raised.value.response["error"] == "channel_not_found"


def test_empty_text_without_blocks_is_no_text(client: WebClient, slack: FakeSlack) -> None:
    # api_call: chat_postMessage would warn client-side before sending
    with pytest.raises(SlackApiError) as raised:
        client.api_call("chat.postMessage", json={"channel": CHANNEL, "text": ""})

    assert raised.value.response["error"] == "no_text"
    assert slack.messages_in(CHANNEL) == []


def test_update_replaces_the_message_in_place(client: WebClient, slack: FakeSlack) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="pending")

    response = client.chat_update(channel=CHANNEL, ts=posted["ts"], text="approved")

    assert response["ts"] == posted["ts"]
    (message,) = slack.messages_in(CHANNEL)
    assert (message.text, message.edits) == ("approved", 1)


def test_update_of_unknown_ts_is_message_not_found(client: WebClient) -> None:
    client.chat_postMessage(channel=CHANNEL, text="pending")

    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts="1000000000.000001", text="approved")

    assert raised.value.response["error"] == "message_not_found"


def test_update_of_a_ts_from_another_channel_is_message_not_found(
    client: WebClient, slack: FakeSlack
) -> None:
    slack.add_channel("C0OTHER001")
    posted = client.chat_postMessage(channel="C0OTHER001", text="pending")

    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts=posted["ts"], text="approved")

    assert raised.value.response["error"] == "message_not_found"


def test_permalink_points_at_the_message(client: WebClient) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="card")

    response = client.chat_getPermalink(channel=CHANNEL, message_ts=posted["ts"])

    assert response["permalink"].endswith(f"/archives/{CHANNEL}/p{posted['ts'].replace('.', '')}")


def test_ephemeral_is_seen_only_by_its_user(client: WebClient, slack: FakeSlack) -> None:
    response = client.chat_postEphemeral(channel=CHANNEL, user=BOB, text="only you")

    assert "message_ts" in response
    assert [e.text for e in slack.ephemerals(user=BOB)] == ["only you"]
    assert slack.ephemerals(user=ALICE) == []
    assert slack.messages_in(CHANNEL) == []


def test_ephemeral_to_an_unknown_user_is_refused(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postEphemeral(channel=CHANNEL, user="U0NOBODY1", text="hi")

    assert raised.value.response["error"] == "user_not_in_channel"


def test_conversations_open_gives_each_user_one_dm(client: WebClient, slack: FakeSlack) -> None:
    first = client.conversations_open(users=ALICE)["channel"]["id"]
    again = client.conversations_open(users=ALICE)
    bobs = client.conversations_open(users=BOB)["channel"]["id"]

    assert first == slack.dm_channel_id(ALICE)
    assert first.startswith("D")
    assert again["channel"]["id"] == first and again["already_open"] is True
    assert bobs != first


def test_dm_channel_takes_messages_once_opened(client: WebClient, slack: FakeSlack) -> None:
    dm = client.conversations_open(users=ALICE)["channel"]["id"]

    client.chat_postMessage(channel=dm, text="your request was approved")

    assert slack.last_message(dm).text == "your request was approved"
    assert slack.messages_in(ALICE) == slack.messages_in(dm)


def test_posting_to_a_user_id_lands_in_their_dm(client: WebClient, slack: FakeSlack) -> None:
    response = client.chat_postMessage(channel=BOB, text="psst")

    assert response["channel"] == slack.dm_channel_id(BOB)
    assert slack.last_message(slack.dm_channel_id(BOB)).text == "psst"


def test_an_unopened_dm_id_is_channel_not_found(client: WebClient, slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=slack.dm_channel_id(ALICE), text="hi")

    assert raised.value.response["error"] == "channel_not_found"


def test_lookup_by_email_finds_the_user_id(client: WebClient) -> None:
    response = client.users_lookupByEmail(email="alice@example.com")

    assert response["user"]["id"] == ALICE
    assert response["user"]["profile"]["email"] == "alice@example.com"


def test_lookup_of_an_unknown_email_is_users_not_found(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.users_lookupByEmail(email="mallory@example.com")

    assert raised.value.response["error"] == "users_not_found"


def test_users_info_knows_configured_users_only(client: WebClient) -> None:
    assert client.users_info(user=BOB)["user"]["name"] == "bob"

    with pytest.raises(SlackApiError) as raised:
        client.users_info(user="U0NOBODY1")

    assert raised.value.response["error"] == "user_not_found"


def test_last_message_without_any_says_what_was_called(slack: FakeSlack) -> None:
    with pytest.raises(LookupError, match="no message in C0DEMO0001"):
        slack.last_message(CHANNEL)
