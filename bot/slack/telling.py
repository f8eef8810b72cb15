"""Telling a person where they acted (on a worker thread), and reading a modal's
metadata: what the edge and every listener share."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from slack_sdk import WebClient

from approvals.overview import home_data
from bot.slack.payloads import user_id_of
from bot.slack.response_urls import ResponseUrls
from bot.slack.views.common import clip, escape
from bot.slack.views.home import home_view
from bot.wiring import Core

log = logging.getLogger(__name__)


class Speaker(Protocol):
    """What telling needs of the edge (`bot.slack.edge.SlackEdge`)."""

    core: Core
    client: WebClient
    response_urls: ResponseUrls


def metadata(body: dict[str, Any]) -> dict[str, Any]:
    """A modal's private_metadata, written by us when we opened it."""
    raw = (body.get("view") or {}).get("private_metadata") or "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def channel_of(body: dict[str, Any]) -> str | None:
    if body.get("channel_id"):
        return str(body["channel_id"])
    if isinstance(body.get("channel"), dict):
        return str(body["channel"]["id"])
    channel = metadata(body).get("channel")
    return str(channel) if channel else None


def tell(
    edge: Speaker,
    body: dict[str, Any],
    text: str,
    *,
    public: bool = False,
    person: str | None = None,
) -> None:
    """Answer the person where they acted: through the response_url of their command or
    click (ephemeral unless `public`), else at the top of their App Home, else by DM."""
    url = body.get("response_url") or metadata(body).get("response_url")
    shown = clip(escape(text), 3900)
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        status = edge.response_urls.post(
            url,
            {
                "text": shown,
                "response_type": "in_channel" if public else "ephemeral",
                "replace_original": False,
            },
        )
        if status == 200:
            return
        log.warning("response_url answered %s; telling the person by DM", status)
    user_id = user_id_of(body)
    if user_id is None:
        return
    from_home = (body.get("view") or {}).get("type") == "home" or metadata(body).get("from_home")
    if from_home and person is not None:
        publish_home(edge, user_id, person, notice=text)
    else:
        edge.client.chat_postMessage(channel=user_id, text=shown)


def publish_home(edge: Speaker, user_id: str, person: str, notice: str | None = None) -> None:
    view = home_view(home_data(edge.core, edge.core.service.directory, person), notice)
    edge.client.views_publish(user_id=user_id, view=view)
