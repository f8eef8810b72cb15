"""The signing helpers produce requests a real Bolt AsyncApp on uvicorn accepts (and the
bad ones it refuses), with payloads its listeners read like Slack's own."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import (
    app_home_opened_payload,
    block_actions_payload,
    event_body,
    interactive_body,
    post_signed,
    signed_headers,
    slash_command_body,
    url_verification_payload,
    view_submission_payload,
)
from tests.slack_fake.conftest import ALICE, BOB, CAROL, CHANNEL, SIGNING_SECRET, BareApp

EVENTS = "/slack/events"


def test_signed_headers_verify_with_slack_sdk() -> None:
    body = slash_command_body("help", user_id=BOB, response_url="http://127.0.0.1/r")
    verifier = SignatureVerifier(SIGNING_SECRET)

    assert verifier.is_valid_request(body, signed_headers(body, SIGNING_SECRET))
    assert not verifier.is_valid_request(
        body, signed_headers(body, SIGNING_SECRET, bad_signature=True)
    )
    assert not verifier.is_valid_request(body, signed_headers(body, SIGNING_SECRET, stale=True))


def test_slash_command_reaches_the_listener_and_respond_reaches_slack(
    bare_app: BareApp, slack: FakeSlack
) -> None:
    body = slash_command_body(
        "request gpu 4h", user_id=BOB, response_url=slack.response_url(CHANNEL, BOB)
    )

    status, _ = post_signed(bare_app.url, EVENTS, body, secret=SIGNING_SECRET)

    assert status == 200
    (command,) = bare_app.received.commands
    assert (command["command"], command["text"]) == ("/aml", "request gpu 4h")
    assert (command["user_id"], command["channel_id"]) == (BOB, CHANNEL)
    assert command["trigger_id"]
    assert [e.text for e in slack.ephemerals(user=BOB)] == ["got `request gpu 4h`"]


def test_bad_signature_is_401_and_runs_nothing(bare_app: BareApp, slack: FakeSlack) -> None:
    body = slash_command_body("help", user_id=BOB, response_url=slack.response_url(CHANNEL, BOB))

    status, _ = post_signed(bare_app.url, EVENTS, body, secret=SIGNING_SECRET, bad_signature=True)

    assert status == 401
    assert not bare_app.received.anything


def test_stale_timestamp_is_401_and_runs_nothing(bare_app: BareApp, slack: FakeSlack) -> None:
    body = slash_command_body("help", user_id=BOB, response_url=slack.response_url(CHANNEL, BOB))

    status, _ = post_signed(bare_app.url, EVENTS, body, secret=SIGNING_SECRET, stale=True)

    assert status == 401
    assert not bare_app.received.anything


def test_unsigned_request_is_401(bare_app: BareApp, slack: FakeSlack) -> None:
    body = slash_command_body("help", user_id=BOB, response_url=slack.response_url(CHANNEL, BOB))

    status, _ = post_signed(
        bare_app.url, EVENTS, body, {"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert status == 401
    assert not bare_app.received.anything


def test_presigned_headers_can_mark_a_redelivery(bare_app: BareApp, slack: FakeSlack) -> None:
    body = slash_command_body("help", user_id=BOB, response_url=slack.response_url(CHANNEL, BOB))
    headers = signed_headers(body, SIGNING_SECRET, retry_num=1)

    status, _ = post_signed(bare_app.url, EVENTS, body, headers)

    assert status == 200
    assert bare_app.received.retry_nums == ["1"]


def test_block_action_click_reaches_the_listener_with_its_message(
    bare_app: BareApp, slack: FakeSlack, client: WebClient
) -> None:
    card = client.chat_postMessage(channel=CHANNEL, text="Request r-1 pending")
    payload = block_actions_payload(
        action_id="approve",
        value="r-1",
        user_id=ALICE,
        message_ts=card["ts"],
        message={"type": "message", "text": "Request r-1 pending", "blocks": []},
        response_url=slack.response_url(CHANNEL, ALICE, message_ts=card["ts"]),
    )

    status, _ = post_signed(bare_app.url, EVENTS, interactive_body(payload), secret=SIGNING_SECRET)

    assert status == 200
    (body,) = bare_app.received.actions
    assert body["actions"][0]["value"] == "r-1"
    assert body["user"]["id"] == ALICE
    assert body["message"]["ts"] == card["ts"]
    assert slack.message(CHANNEL, card["ts"]).text == f"Approved by <@{ALICE}>"


def test_view_submission_reaches_the_listener_and_can_answer_field_errors(
    bare_app: BareApp,
) -> None:
    payload = view_submission_payload(
        callback_id="deny_reason",
        user_id=ALICE,
        private_metadata="r-1",
        values={"reason": {"reason_input": {"type": "plain_text_input", "value": "no"}}},
    )

    response = post_signed(bare_app.url, EVENTS, interactive_body(payload), secret=SIGNING_SECRET)

    assert response.status == 200
    assert response.json() == {
        "response_action": "errors",
        "errors": {"reason": "Say why in a few words."},
    }
    (body,) = bare_app.received.submissions
    assert body["view"]["private_metadata"] == "r-1"


def test_app_home_opened_reaches_the_listener(bare_app: BareApp, slack: FakeSlack) -> None:
    payload = app_home_opened_payload(user_id=CAROL, event_id="Ev0HOME001")

    status, _ = post_signed(bare_app.url, EVENTS, event_body(payload), secret=SIGNING_SECRET)

    assert status == 200
    (event,) = bare_app.received.home_opened
    assert (event["user"], event["tab"]) == (CAROL, "home")
    home = slack.home_view(CAROL)
    assert home is not None and home.type == "home"


def test_url_verification_echoes_the_challenge(bare_app: BareApp) -> None:
    payload = url_verification_payload("challenge-123")

    response = post_signed(bare_app.url, EVENTS, event_body(payload), secret=SIGNING_SECRET)

    assert response.status == 200
    assert response.json() == {"challenge": "challenge-123"}
