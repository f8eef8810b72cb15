"""Block Kit limits the fake enforces on messages, as Slack's `invalid_blocks`.

Blocks are sent as raw dicts: `slack_sdk.models` would refuse some of these before
sending, but not the 50-block limit nor duplicate block_ids.
"""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from tests.fakes.slack_api import FakeSlack
from tests.slack_fake.conftest import CHANNEL


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def button(text: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": "req-1",
    }


def post_blocks(client: WebClient, blocks: list[dict[str, Any]]) -> str:
    """Posts and returns Slack's error, or "ok"."""
    try:
        client.chat_postMessage(channel=CHANNEL, text="fallback", blocks=blocks)
    except SlackApiError as error:
        return str(error.response["error"])
    return "ok"


def test_an_approval_card_built_with_slack_sdk_models_is_accepted(
    client: WebClient, slack: FakeSlack
) -> None:
    card = [
        HeaderBlock(text="Access request"),
        SectionBlock(
            text="*bob* asks for *gpu-a100* for 4h",
            fields=[MarkdownTextObject(text="*Cost*\n$12/h"), MarkdownTextObject(text="*Role*")],
        ),
        ContextBlock(elements=[MarkdownTextObject(text="expires in 24h")]),
        DividerBlock(),
        ActionsBlock(
            block_id="decision",
            elements=[
                ButtonElement(text="Approve", action_id="approve", value="r1", style="primary"),
                ButtonElement(text="Deny", action_id="deny", value="r1", style="danger"),
            ],
        ),
    ]

    response = client.chat_postMessage(channel=CHANNEL, text="Access request", blocks=card)

    assert response["ok"] is True
    assert "bob" in slack.last_message(CHANNEL).all_text


def test_fifty_blocks_are_accepted(client: WebClient) -> None:
    assert post_blocks(client, [section(f"line {i}") for i in range(50)]) == "ok"


def test_more_than_fifty_blocks_are_invalid_blocks(client: WebClient, slack: FakeSlack) -> None:
    assert post_blocks(client, [section(f"line {i}") for i in range(51)]) == "invalid_blocks"

    (call,) = slack.calls("chat.postMessage")
    assert isinstance(call.response, dict)
    assert call.response["response_metadata"]["messages"] == [
        "[ERROR] no more than 50 items allowed [json-pointer:/blocks]"
    ]
    assert slack.messages_in(CHANNEL) == []


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        pytest.param([section("x" * 3001)], "/blocks/0/text/text", id="section-text-over-3000"),
        pytest.param(
            [{"type": "actions", "elements": [button("x" * 76, "approve")]}],
            "/blocks/0/elements/0/text/text",
            id="button-text-over-75",
        ),
        pytest.param(
            [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}],
            "/blocks/0/text/text",
            id="header-over-150",
        ),
        pytest.param(
            [{"type": "header", "text": {"type": "mrkdwn", "text": "*bold*"}}],
            "/blocks/0/text/type",
            id="header-must-be-plain-text",
        ),
        pytest.param(
            [{"type": "actions", "elements": [button("A", "same"), button("B", "same")]}],
            "/blocks/0/elements/1/action_id",
            id="duplicate-action-id-in-a-block",
        ),
        pytest.param(
            [section("a", block_id="card"), section("b", block_id="card")],
            "/blocks/1/block_id",
            id="duplicate-block-id",
        ),
        pytest.param([{"type": "carousel"}], "/blocks/0", id="unknown-block-type"),
        pytest.param([{"type": "section"}], "/blocks/0", id="section-without-text-or-fields"),
        pytest.param(
            [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}],
            "/blocks/0/text/text",
            id="empty-text-object",
        ),
        pytest.param(
            [{"type": "section", "text": {"type": "mrkdwn"}}],
            "/blocks/0/text",
            id="text-object-without-text",
        ),
        pytest.param(
            [{"type": "actions", "elements": [{"type": "spinner", "action_id": "x"}]}],
            "/blocks/0/elements/0",
            id="unknown-element-type",
        ),
        pytest.param(
            [{"type": "actions", "elements": [{**button("Go", "go"), "style": "loud"}]}],
            "/blocks/0/elements/0/style",
            id="button-style-not-primary-or-danger",
        ),
        pytest.param(
            [{"type": "actions", "elements": [button(str(i), f"a{i}") for i in range(26)]}],
            "/blocks/0/elements",
            id="more-than-25-actions",
        ),
        pytest.param(
            [
                {
                    "type": "section",
                    "fields": [{"type": "mrkdwn", "text": str(i)} for i in range(11)],
                }
            ],
            "/blocks/0/fields",
            id="more-than-10-fields",
        ),
    ],
)
def test_invalid_blocks_are_refused_with_a_pointer(
    client: WebClient, slack: FakeSlack, blocks: list[dict[str, Any]], pointer: str
) -> None:
    assert post_blocks(client, blocks) == "invalid_blocks"

    (call,) = slack.calls("chat.postMessage")
    assert isinstance(call.response, dict)
    messages = call.response["response_metadata"]["messages"]
    assert any(m.endswith(f"[json-pointer:{pointer}]") for m in messages), messages
    assert slack.messages_in(CHANNEL) == []


def test_same_action_id_in_two_blocks_is_allowed(client: WebClient) -> None:
    blocks = [
        {"type": "actions", "block_id": "r1", "elements": [button("Approve", "approve")]},
        {"type": "actions", "block_id": "r2", "elements": [button("Approve", "approve")]},
    ]

    assert post_blocks(client, blocks) == "ok"


def test_chat_update_checks_blocks_too(client: WebClient, slack: FakeSlack) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="pending")

    with pytest.raises(SlackApiError) as raised:
        client.chat_update(
            channel=CHANNEL, ts=posted["ts"], text="approved", blocks=[section("x" * 3001)]
        )

    assert raised.value.response["error"] == "invalid_blocks"
    assert slack.last_message(CHANNEL).text == "pending"


def test_form_encoded_blocks_that_are_not_json_are_invalid_blocks_format(
    client: WebClient,
) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.api_call(
            "chat.postMessage", params={"channel": CHANNEL, "text": "x", "blocks": "[{oops"}
        )

    assert raised.value.response["error"] == "invalid_blocks_format"


def test_form_encoded_blocks_are_validated_like_json_ones(client: WebClient) -> None:
    import json

    with pytest.raises(SlackApiError) as raised:
        client.api_call(
            "chat.postMessage",
            params={"channel": CHANNEL, "text": "x", "blocks": json.dumps([{"type": "section"}])},
        )

    assert raised.value.response["error"] == "invalid_blocks"
