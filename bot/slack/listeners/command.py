"""`/aml ...`: ack at once; on a thread, run the text through the core exactly like the
console, and answer through the command's response_url. `job submit` and `datastore
register` with no arguments open their form instead (see `forms.py`)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.slack.deliveries import Delivery
from bot.slack.edge import SlackEdge
from bot.slack.listeners.forms import FORMS, open_form
from bot.slack.telling import tell
from bot.slack.views.common import unescape
from shared.secrets import find_secret

# Desktop clients may turn typed quotes into typographic ones; the grammar wants ASCII.
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"})


def command_text(raw: str) -> str:
    """Slack's slash command text as the person typed it."""
    return unescape(raw).translate(_QUOTES).strip()


def form_wanted(text: str) -> tuple[str, str | None] | None:
    """(form, workspace) when the text names a form command with nothing but an optional
    `--workspace WS`; None when it should be parsed as a typed command."""
    words = text.split()
    if len(words) < 2 or (words[0], words[1]) not in FORMS:
        return None
    rest = words[2:]
    if not rest:
        return f"{words[0]} {words[1]}", None
    if len(rest) == 2 and rest[0] == "--workspace":
        return f"{words[0]} {words[1]}", rest[1]
    return None


def run_command(edge: SlackEdge, delivery: Delivery) -> None:
    body = delivery.body
    person = edge.person(delivery)
    if person is None:
        tell(edge, body, edge.core.service.unknown_person().text)
        return
    refusal = edge.refuse_secret(person, delivery)
    if refusal is not None:
        tell(edge, body, refusal.text, person=person)
        return
    text = command_text(str(body.get("text", "")))
    form = form_wanted(text)
    # Opening a form skips the parser, and an unknown workspace is named in the answer: a
    # secret there takes the typed path instead, where the core refuses and audits it.
    if form is not None and find_secret(text) is None:
        open_form(edge, delivery, person, form[0], form[1])
        return
    reply = edge.run_text(person, f"/aml {text}", body.get("channel_id"))
    tell(edge, body, reply.text, public=reply.public, person=person)


def open_command_form(edge: SlackEdge, delivery: Delivery) -> None:
    run_command(edge, delivery)


def register(app: AsyncApp, edge: SlackEdge) -> None:
    typed = edge.hand_over(run_command)
    # A form must open within the trigger's 3 s: this process opens it right after the ack.
    form = edge.hand_over(open_command_form, "edge")

    async def route(
        ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        wanted = form_wanted(command_text(str(body.get("text", ""))))
        await (form if wanted else typed)(ack=ack, body=body, context=context, request=request)

    app.command(edge.options.command)(route)
