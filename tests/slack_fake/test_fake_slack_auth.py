"""The fake answers only the bot token, passed as Slack accepts it."""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import FakeSlack
from tests.slack_fake.conftest import CHANNEL, TOKEN


def test_auth_test_describes_the_bot(client: WebClient, slack: FakeSlack) -> None:
    response = client.auth_test()

    assert response["ok"] is True
    assert response["user_id"] == slack.bot_user_id
    assert response["bot_id"] == slack.bot_id
    assert response["team_id"] == slack.team_id


def test_missing_token_is_not_authed(slack: FakeSlack) -> None:
    anonymous = WebClient(base_url=slack.base_url)

    with pytest.raises(SlackApiError) as raised:
        anonymous.chat_postMessage(channel=CHANNEL, text="hello")

    assert raised.value.response["error"] == "not_authed"
    assert slack.messages_in(CHANNEL) == []


def test_wrong_token_is_invalid_auth(slack: FakeSlack) -> None:
    impostor = WebClient(token="xoxb-someone-else", base_url=slack.base_url)

    with pytest.raises(SlackApiError) as raised:
        impostor.chat_postMessage(channel=CHANNEL, text="hello")

    assert raised.value.response["error"] == "invalid_auth"
    assert slack.messages_in(CHANNEL) == []


def raw_post(slack: FakeSlack, method: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Without slack_sdk, which moves a `token` argument into the Authorization header."""
    request = urllib.request.Request(
        slack.base_url + method, data=body, headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def test_token_as_a_form_field_is_accepted(slack: FakeSlack) -> None:
    form = urlencode({"token": TOKEN, "channel": CHANNEL, "text": "hi"}).encode()

    answer = raw_post(slack, "chat.postMessage", form, "application/x-www-form-urlencoded")

    assert answer["ok"] is True
    assert slack.calls("chat.postMessage")[0].body_format == "form"


def test_token_inside_a_json_body_is_ignored_as_slack_does(slack: FakeSlack) -> None:
    body = json.dumps({"token": TOKEN, "channel": CHANNEL, "text": "hi"}).encode()

    answer = raw_post(slack, "chat.postMessage", body, "application/json")

    assert answer == {"ok": False, "error": "not_authed"}


def test_unknown_method_is_404_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.api_call("chat.postTelegram", json={"channel": CHANNEL})

    assert raised.value.response.status_code == 404
    assert raised.value.response["error"] == "unknown_method"


def test_every_call_is_recorded_with_its_headers_and_outcome(
    client: WebClient, slack: FakeSlack
) -> None:
    client.chat_postMessage(channel=CHANNEL, text="one")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0NOWHERE", text="two")

    calls = slack.calls("chat.postMessage")
    assert [c.ok for c in calls] == [True, False]
    assert calls[1].error == "channel_not_found"
    assert calls[0].params["text"] == "one"
    assert calls[0].headers["authorization"] == f"Bearer {TOKEN}"
