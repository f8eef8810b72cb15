"""A Slack delivery as the inbox keeps it and a job receives it: its key (the
de-duplication), its body with secrets withheld, and the ids a button may carry.

Nothing here runs on the event loop's hot path but `inbox_payload` and `delivery_key`, once
per ack; nothing here knows the inbox or the workers (`bot/slack/edge.py` does).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest

from shared.secrets import find_secret

WITHHELD = "[withheld: looked like a secret]"
# Where a person types: a secret there is refused, not only withheld.
_TYPED_FIELDS = ("text", "view")
# Top-level fields Slack itself writes into a delivery: its ids and the reply URL. Nobody
# types there (the body is signed by Slack), and the URL's `://` would run every detector
# on every ack.
_WRITTEN_BY_SLACK = frozenset(
    {
        "api_app_id",
        "channel_id",
        "command",
        "enterprise_id",
        "is_enterprise_install",
        "response_url",
        "team_id",
        "trigger_id",
        "user_id",
    }
)


@dataclass(frozen=True)
class Delivery:
    """One request from Slack, as the job that handles it needs it."""

    body: dict[str, Any]
    home_team: str | None  # the team the bot is installed in (from auth.test)
    retry_num: int  # X-Slack-Retry-Num; 0 for a first delivery
    # The kind of secret found where the person typed (withheld from `body`), if any.
    secret: str | None = None


def delivery_key(body: dict[str, Any]) -> str:
    """The key naming one delivery: the event id for events, else the trigger id that Slack
    mints once per command, click or form submission. Without either (never seen from
    Slack), a fresh key: nothing tells two such deliveries apart."""
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    kind = str(body.get("type") or ("slash_command" if "command" in body else "other"))
    trigger = body.get("trigger_id")
    if trigger:
        return f"{kind}:{trigger}"
    return f"{kind}:unkeyed:{uuid.uuid4().hex}"


def withhold_secrets(body: Any, path: tuple[str, ...] = ()) -> tuple[Any, list[str]]:
    """The body with every string that holds a secret replaced, and the kinds found where a
    person types. Slack's legacy verification `token` is dropped: it is a credential too."""
    typed: list[str] = []
    if isinstance(body, dict):
        cleaned = {}
        for key, value in body.items():
            if key == "token":
                continue
            if not path and key in _WRITTEN_BY_SLACK and isinstance(value, str):
                cleaned[key] = value
                continue
            cleaned[key], found = withhold_secrets(value, (*path, str(key)))
            typed += found
        return cleaned, typed
    if isinstance(body, list):
        items = []
        for index, value in enumerate(body):
            item, found = withhold_secrets(value, (*path, str(index)))
            items.append(item)
            typed += found
        return items, typed
    if isinstance(body, str):
        kind = find_secret(body)
        if kind is None:
            return body, []
        return WITHHELD, ([kind] if path[:1] and path[0] in _TYPED_FIELDS else [])
    return body, []


MAX_ID = 2**31 - 1  # the database's integer


def id_in(value: object) -> int | None:
    """The id a button carries, or None: ASCII digits only (`"²".isdigit()` is true), and
    no larger than an id can be."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def inbox_payload(
    body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
) -> dict[str, Any]:
    """What the inbox keeps of a delivery: the body without secrets, and who it came to."""
    retry = request.headers.get("x-slack-retry-num", ["0"])[0]
    authorized = context.authorize_result
    cleaned, secrets = withhold_secrets(body)
    return {
        "body": cleaned,
        "home_team": authorized.team_id if authorized is not None else None,
        "retry_num": int(retry) if retry.isdigit() else 0,
        "secret": secrets[0] if secrets else None,
    }
