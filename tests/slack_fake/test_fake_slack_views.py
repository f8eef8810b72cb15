"""Modals and the Home tab. Slack answers bad views with `invalid_arguments` (not
`invalid_blocks`) and a `[json-pointer:/view/...]` message."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import new_trigger_id
from tests.slack_fake.conftest import ALICE


def modal(blocks: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "deny_reason",
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "blocks": blocks if blocks is not None else [reason_input()],
        **extra,
    }


def reason_input() -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": "reason",
        "label": {"type": "plain_text", "text": "Reason"},
        "element": {"type": "plain_text_input", "action_id": "reason_input"},
    }


def home(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "home", "blocks": blocks}


def divider_blocks(count: int) -> list[dict[str, Any]]:
    return [{"type": "divider"} for _ in range(count)]


def slack_error(call: Any) -> tuple[str, list[str]]:
    with pytest.raises(SlackApiError) as raised:
        call()
    response = raised.value.response
    return response["error"], response.get("response_metadata", {}).get("messages", [])


def test_views_open_with_a_trigger_opens_the_modal(client: WebClient, slack: FakeSlack) -> None:
    response = client.views_open(trigger_id=new_trigger_id(), view=modal())

    view = response["view"]
    assert view["id"].startswith("V")
    assert view["callback_id"] == "deny_reason"
    (opened,) = slack.views()
    assert (opened.id, opened.type, opened.opened_by) == (view["id"], "modal", "views.open")


def test_views_open_without_a_trigger_is_refused(client: WebClient) -> None:
    error, messages = slack_error(lambda: client.api_call("views.open", json={"view": modal()}))

    assert error == "invalid_arguments"
    assert messages == ["[ERROR] missing required field: trigger_id"]


def test_a_malformed_trigger_is_invalid_trigger_id(client: WebClient) -> None:
    error, _ = slack_error(lambda: client.views_open(trigger_id="not-a-trigger", view=modal()))

    assert error == "invalid_trigger_id"


def test_a_trigger_can_be_exchanged_only_once(client: WebClient) -> None:
    trigger = new_trigger_id()
    client.views_open(trigger_id=trigger, view=modal())

    error, _ = slack_error(lambda: client.views_open(trigger_id=trigger, view=modal()))

    assert error == "exchanged_trigger_id"


def test_views_open_refuses_a_home_view(client: WebClient) -> None:
    error, messages = slack_error(
        lambda: client.views_open(trigger_id=new_trigger_id(), view=home(divider_blocks(1)))
    )

    assert error == "invalid_arguments"
    assert messages[0].endswith("[json-pointer:/view/type]")


def test_a_modal_of_100_blocks_is_accepted_and_101_refused(client: WebClient) -> None:
    client.views_open(trigger_id=new_trigger_id(), view=modal(divider_blocks(100)))

    error, messages = slack_error(
        lambda: client.views_open(trigger_id=new_trigger_id(), view=modal(divider_blocks(101)))
    )

    assert error == "invalid_arguments"
    assert messages == ["[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"]


def test_a_modal_title_over_24_characters_is_refused(client: WebClient) -> None:
    too_long = modal(title={"type": "plain_text", "text": "x" * 25})

    error, messages = slack_error(
        lambda: client.views_open(trigger_id=new_trigger_id(), view=too_long)
    )

    assert error == "invalid_arguments"
    assert messages[0].endswith("[json-pointer:/view/title/text]")


def test_a_modal_with_inputs_needs_a_submit_button(client: WebClient) -> None:
    without_submit = modal()
    del without_submit["submit"]

    error, _ = slack_error(
        lambda: client.views_open(trigger_id=new_trigger_id(), view=without_submit)
    )

    assert error == "invalid_arguments"


def test_blocks_inside_a_view_follow_the_block_rules(client: WebClient) -> None:
    bad = modal([reason_input(), {"type": "section", "text": {"type": "mrkdwn", "text": ""}}])

    error, messages = slack_error(lambda: client.views_open(trigger_id=new_trigger_id(), view=bad))

    assert error == "invalid_arguments"
    assert messages == [
        "[ERROR] must be more than 0 characters [json-pointer:/view/blocks/1/text/text]"
    ]


def test_views_push_needs_its_own_trigger(client: WebClient, slack: FakeSlack) -> None:
    client.views_open(trigger_id=new_trigger_id(), view=modal())

    client.views_push(trigger_id=new_trigger_id(), view=modal(callback_id="details"))

    assert [v.opened_by for v in slack.views()] == ["views.open", "views.push"]


def test_views_update_replaces_the_open_modal(client: WebClient, slack: FakeSlack) -> None:
    opened = client.views_open(trigger_id=new_trigger_id(), view=modal())["view"]

    client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal(divider_blocks(2)))

    assert slack.view(opened["id"]).view["blocks"] == divider_blocks(2)
    assert slack.view(opened["id"]).updates == 1


def test_views_update_with_a_stale_hash_is_hash_conflict(client: WebClient) -> None:
    opened = client.views_open(trigger_id=new_trigger_id(), view=modal())["view"]
    client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal())

    error, _ = slack_error(
        lambda: client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal())
    )

    assert error == "hash_conflict"


def test_views_update_of_an_unknown_view_is_not_found(client: WebClient) -> None:
    error, _ = slack_error(lambda: client.views_update(view_id="V0NOPE", view=modal()))

    assert error == "not_found"


def test_views_publish_sets_the_users_home_tab(client: WebClient, slack: FakeSlack) -> None:
    client.views_publish(user_id=ALICE, view=home(divider_blocks(1)))
    client.views_publish(user_id=ALICE, view=home(divider_blocks(3)))

    published = slack.home_view(ALICE)
    assert published is not None
    assert published.view["blocks"] == divider_blocks(3)
    assert published.updates == 1
    assert slack.home_view("U0BOB0001") is None


def test_a_home_tab_of_more_than_100_blocks_is_refused(client: WebClient) -> None:
    error, messages = slack_error(
        lambda: client.views_publish(user_id=ALICE, view=home(divider_blocks(101)))
    )

    assert error == "invalid_arguments"
    assert messages == ["[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"]


def test_views_publish_refuses_a_modal(client: WebClient) -> None:
    error, _ = slack_error(lambda: client.views_publish(user_id=ALICE, view=modal()))

    assert error == "invalid_arguments"
