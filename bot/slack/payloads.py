"""The shapes of what Slack sends us, checked once at the edge before anything reads them.

Bolt's middleware and our jobs read a payload's fields without looking at their types
(`body["user"]["id"]`, `actions[0].get(...)`); a signed payload of the wrong shape would end
in a 500 with a traceback there, or in a worker after it was acknowledged. Only the fields
amlbot reads are described; everything else is allowed and left alone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

Text = Annotated[str, Field(max_length=40_000)]
Url = Annotated[str, Field(max_length=2_000, pattern=r"^https?://[^\s]+$")]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class SlashCommand(_Shape):
    command: Text
    text: Text = ""
    user_id: Text
    team_id: Text | None = None
    channel_id: Text | None = None
    response_url: Url | None = None
    trigger_id: Text | None = None


class _Id(_Shape):
    id: Text


class _User(_Shape):
    id: Text
    team_id: Text | None = None


class _Action(_Shape):
    action_id: Text
    value: Text | None = None
    block_id: Text | None = None


class _Message(_Shape):
    ts: Text | None = None
    text: Text | None = None
    blocks: list[dict[str, Any]] | None = None


class _State(_Shape):
    values: dict[str, dict[str, dict[str, Any]]] = {}


class _View(_Shape):
    type: Text | None = None
    callback_id: Text | None = None
    private_metadata: Text | None = None
    state: _State | None = None


class BlockActions(_Shape):
    type: Literal["block_actions"]
    user: _User
    team: _Id | None = None
    actions: Annotated[list[_Action], Field(min_length=1)]
    trigger_id: Text | None = None
    response_url: Url | None = None
    channel: _Id | None = None
    container: dict[str, Any] | None = None
    message: _Message | None = None
    view: _View | None = None


class _SubmittedView(_View):
    callback_id: Text
    private_metadata: Text = ""
    state: _State


class ViewSubmission(_Shape):
    type: Literal["view_submission"]
    user: _User
    team: _Id | None = None
    view: _SubmittedView
    trigger_id: Text | None = None


class OtherInteraction(_Shape):
    """`view_closed`, `shortcut`, ...: no listener of ours; Bolt answers them."""

    type: Literal[
        "view_closed", "shortcut", "message_action", "block_suggestion", "app_rate_limited"
    ]
    user: _User | None = None


class _Event(_Shape):
    type: Text
    user: Text | None = None
    tab: Text | None = None


class EventCallback(_Shape):
    type: Literal["event_callback"]
    event_id: Text
    event: _Event
    team_id: Text | None = None


class UrlVerification(_Shape):
    type: Literal["url_verification"]
    challenge: Text


_INTERACTIONS: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        BlockActions | ViewSubmission | OtherInteraction | EventCallback | UrlVerification,
        Field(discriminator="type"),
    ]
)
_COMMAND: TypeAdapter[SlashCommand] = TypeAdapter(SlashCommand)


def shape_problem(body: dict[str, Any]) -> str | None:
    """What is wrong with a payload's shape (naming the field), or None."""
    try:
        if "command" in body and "type" not in body:
            _COMMAND.validate_python(body)
        else:
            _INTERACTIONS.validate_python(body)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        return f"{where}: {first['msg']}"
    return None


def team_id_of(body: dict[str, Any]) -> str | None:
    if isinstance(body.get("team"), dict):
        return str(body["team"]["id"])
    if isinstance(body.get("user"), dict) and body["user"].get("team_id"):
        return str(body["user"]["team_id"])
    return str(body["team_id"]) if body.get("team_id") else None


def user_id_of(body: dict[str, Any]) -> str | None:
    if isinstance(body.get("user"), dict):
        return str(body["user"]["id"])
    if isinstance(body.get("event"), dict) and body["event"].get("user"):
        return str(body["event"]["user"])
    return str(body["user_id"]) if body.get("user_id") else None
