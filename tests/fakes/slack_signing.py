"""Requests shaped and signed the way Slack sends them to an app's Request URL.

Payload shapes follow Slack's own examples in bolt-python's test suite
(tests/scenario_tests/test_slash_command.py, test_block_actions.py,
test_view_submission.py, test_events_url_verification.py). Signing is Slack's v0 scheme,
HMAC-SHA256 of `v0:{timestamp}:{body}`, computed with `slack_sdk.signature`.

    body = slash_command_body("request gpu 4h", user_id="U0BOB0001",
                              response_url=slack.response_url("C0DEMO0001", "U0BOB0001"))
    status, text = post_signed(app_url, "/slack/events", body, secret=SIGNING_SECRET)
"""

from __future__ import annotations

import http.client
import itertools
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

JSONDict = dict[str, Any]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
STALE_AFTER_SECONDS = 5 * 60  # Bolt and slack_sdk refuse timestamps older than this

DEMO_TEAM_ID = "T0AMLTEST"
DEMO_CHANNEL_ID = "C0DEMO0001"

_sequence = itertools.count(1)


def new_trigger_id() -> str:
    """A fresh trigger id in Slack's `digits.digits.hex` form (the fake accepts each once)."""
    first = f"{int(time.time())}{next(_sequence):04d}"
    return f"{first}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def new_event_id() -> str:
    return f"Ev{secrets.token_hex(5).upper()}"


# ---- payloads --------------------------------------------------------------------------


def slash_command_body(text: str, **fields: Any) -> str:
    """The form-encoded body of a slash command invocation (over HTTP); `fields` as for
    `slash_command_payload`."""
    return urlencode(slash_command_payload(text, **fields))


def slash_command_payload(
    text: str,
    *,
    user_id: str,
    response_url: str,
    command: str = "/aml",
    channel_id: str = DEMO_CHANNEL_ID,
    team_id: str = DEMO_TEAM_ID,
    trigger_id: str | None = None,
    user_name: str | None = None,
    channel_name: str = "aml-demo",
    team_domain: str = "amlbot-test",
) -> dict[str, str]:
    """A slash command invocation's fields: form-encoded over HTTP, a JSON object as the
    payload of a Socket Mode `slash_commands` envelope."""
    return {
        "token": "verification-token-unused",  # legacy field; signatures replaced it
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0AMLBOT0",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }


def block_actions_payload(
    *,
    action_id: str,
    user_id: str,
    response_url: str,
    value: str | None = None,
    block_id: str = "actions",
    channel_id: str = DEMO_CHANNEL_ID,
    message_ts: str = "1700000000.000100",
    message: JSONDict | None = None,
    team_id: str = DEMO_TEAM_ID,
    trigger_id: str | None = None,
    button_text: str = "Button",
) -> JSONDict:
    """A button click on a message. Pass the posted `message` (text, blocks) when the
    listener reads it; otherwise a minimal one with the same `ts` is sent."""
    action: JSONDict = {
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": button_text, "emoji": True},
        "type": "button",
        "action_ts": f"{time.time():.6f}",
    }
    if value is not None:
        action["value"] = value
    shown = message or {"type": "message", "text": "", "blocks": []}
    return {
        "type": "block_actions",
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": team_id,
        },
        "api_app_id": "A0AMLBOT0",
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": "amlbot-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "aml-demo"},
        "message": {**shown, "ts": message_ts},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def view_submission_payload(
    *,
    callback_id: str,
    user_id: str,
    values: Mapping[str, Mapping[str, JSONDict]],
    private_metadata: str = "",
    view_id: str = "V0000000001",
    team_id: str = DEMO_TEAM_ID,
    blocks: list[JSONDict] | None = None,
    trigger_id: str | None = None,
    response_urls: list[JSONDict] | None = None,
    title: str = "amlbot",
) -> JSONDict:
    """A modal's Submit. `values` is `state.values`: block_id -> action_id -> element state,
    e.g. `{"reason": {"reason_input": {"type": "plain_text_input", "value": "no budget"}}}`."""
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "amlbot-test"},
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": team_id,
        },
        "api_app_id": "A0AMLBOT0",
        "token": "verification-token-unused",
        "trigger_id": trigger_id or new_trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": {block: dict(actions) for block, actions in values.items()}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": {"type": "plain_text", "text": title},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel"},
            "submit": {"type": "plain_text", "text": "Submit"},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": "A0AMLBOT0",
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": "B0AMLBOT0",
        },
        "response_urls": response_urls or [],
        "is_enterprise_install": False,
    }


def app_home_opened_payload(
    *,
    user_id: str,
    team_id: str = DEMO_TEAM_ID,
    event_id: str | None = None,
    tab: str = "home",
    view_id: str | None = None,
) -> JSONDict:
    """An Events API `event_callback` for a user opening the app's Home tab."""
    event: JSONDict = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": f"D{user_id[1:]}",
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }
    if view_id is not None:
        event["view"] = {"id": view_id, "team_id": team_id, "type": "home"}
    return {
        "token": "verification-token-unused",
        "team_id": team_id,
        "api_app_id": "A0AMLBOT0",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "team_id": team_id,
                "user_id": "U0AMLBOT0",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def url_verification_payload(
    challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
) -> JSONDict:
    return {
        "token": "verification-token-unused",
        "challenge": challenge,
        "type": "url_verification",
    }


# ---- encoding and signing --------------------------------------------------------------


def interactive_body(payload: JSONDict) -> str:
    """Interactivity (block_actions, view_submission) arrives as form field `payload=<json>`."""
    return f"payload={quote(json.dumps(payload))}"


def event_body(payload: JSONDict) -> str:
    """Events API requests (event_callback, url_verification) arrive as a JSON body."""
    return json.dumps(payload)


def content_type_of(body: str) -> str:
    return JSON if body.lstrip().startswith("{") else FORM


def signed_headers(
    body: str,
    secret: str,
    *,
    timestamp: int | None = None,
    stale: bool = False,
    bad_signature: bool = False,
    content_type: str | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
) -> dict[str, str]:
    """Headers Slack sends with `body`.

    `stale` dates the request 6 minutes back (Slack apps refuse anything older than 5);
    `bad_signature` signs with a different secret; `retry_num` marks a redelivery
    (`X-Slack-Retry-Num`, `X-Slack-Retry-Reason`), as Slack does when an ack is late.
    """
    when = timestamp if timestamp is not None else int(time.time())
    if stale:
        when -= STALE_AFTER_SECONDS + 60
    signing_secret = f"not-{secret}" if bad_signature else secret
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=str(when), body=body)
    assert signature is not None  # only None without a timestamp
    headers = {
        "Content-Type": content_type or content_type_of(body),
        "X-Slack-Request-Timestamp": str(when),
        "X-Slack-Signature": signature,
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers


class SignedResponse(NamedTuple):
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def post_signed(
    base_url: str,
    path: str,
    body: str,
    headers: Mapping[str, str] | None = None,
    secret: str | None = None,
    *,
    stale: bool = False,
    bad_signature: bool = False,
    timeout: float = 10.0,
) -> SignedResponse:
    """POST `body` to `base_url + path`; returns `(status, body)`.

    With `secret`, the body is signed now (see `signed_headers`) and `headers` are added on
    top (they win, e.g. to send `X-Slack-Retry-Num`). Without `secret`, `headers` must
    already carry the signature, as `signed_headers` makes them.
    """
    sent: dict[str, str] = {}
    if secret is not None:
        sent.update(signed_headers(body, secret, stale=stale, bad_signature=bad_signature))
    elif stale or bad_signature:
        raise ValueError("stale/bad_signature need the secret to sign with")
    sent.update(headers or {})
    target = urlsplit(base_url.rstrip("/") + path)
    if target.scheme != "http" or target.hostname is None:
        raise ValueError(f"post_signed speaks plain http to a local app, not {base_url!r}")
    connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=timeout)
    try:
        request_path = target.path + (f"?{target.query}" if target.query else "")
        connection.request("POST", request_path, body=body.encode("utf-8"), headers=sent)
        response = connection.getresponse()
        return SignedResponse(response.status, response.read().decode("utf-8"))
    finally:
        connection.close()
