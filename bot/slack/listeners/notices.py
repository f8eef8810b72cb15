"""The listeners of the notices' buttons (Extend, Stop instance / Set minimum to 0 / Set idle
time, Snooze); the notices themselves are drawn by `bot/slack/renderers.py`.

Add to the app with `build_slack(..., extra_registrars=[register_slack_actions])`.
Listeners follow the edge's pattern: `edge.hand_over` keeps the click in the inbox and
acks; a worker runs the job.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from approvals.idle.actions import FixChoice, act_on_item, snooze_item
from approvals.idle.digest import digest_item, digest_items
from approvals.reminders import extension_request
from bot.slack.deliveries import Delivery, id_in
from bot.slack.edge import SlackEdge
from bot.slack.telling import channel_of, tell
from bot.slack.views.notices import (
    EXTEND_ACTION,
    IDLE_FIX_ACTION,
    IDLE_SHUTDOWN_ACTION,
    SNOOZE_ACTIONS,
    SNOOZE_PREFIX,
    idle_digest_message,
)
from shared.errors import UserError

UNKNOWN_BUTTON = "That button does not belong to anything amlbot knows; nothing was done."

# ---- listeners (jobs run on the edge's threads after the ack) ------------------------


def clicked(body: dict[str, Any]) -> tuple[str, int | None]:
    """(action id, the id the button carries) of the click."""
    action = (body.get("actions") or [{}])[0]
    value = str(action.get("value", ""))
    return str(action.get("action_id", "")), id_in(value)


def _clicker(edge: SlackEdge, delivery: Delivery) -> tuple[str, str, int] | None:
    """(person, action id, id) of a click to act on, after telling anyone it is not for."""
    body = delivery.body
    person = edge.person(delivery)
    if person is None:
        tell(edge, body, edge.core.service.unknown_person().text)
        return None
    action_id, target = clicked(body)
    if target is None:
        tell(edge, body, UNKNOWN_BUTTON, person=person)
        return None
    return person, action_id, target


def _redraw_digest(edge: SlackEdge, body: dict[str, Any], item_id: int) -> None:
    """Show a click's outcome in the digest itself: the item's buttons give way to a note."""
    item = digest_item(edge.core, item_id)
    channel = (body.get("channel") or {}).get("id")
    ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
    if item is None or not channel or not ts:
        return
    message = idle_digest_message(item.workspace, digest_items(edge.core, item.digest_id))
    edge.client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)


def extend_grant(edge: SlackEdge, delivery: Delivery) -> None:
    """Extend: a new access request for the grant's cluster, through the core like a typed
    `/aml access request`, so policy and leads decide it as usual."""
    click = _clicker(edge, delivery)
    if click is None:
        return
    person, _, grant_id = click
    try:
        command = extension_request(edge.core, person, grant_id)
    except UserError as exc:
        tell(edge, delivery.body, exc.render(), person=person)
        return
    reply = edge.run(person, command, channel_of(delivery.body))
    tell(edge, delivery.body, reply.text, person=person)


def fix_idle_compute(edge: SlackEdge, delivery: Delivery) -> None:
    """Stop instance / Set minimum to 0 / Set idle time / Set idle shutdown."""
    click = _clicker(edge, delivery)
    if click is None:
        return
    person, action_id, item_id = click
    choice: FixChoice = "idle_shutdown" if action_id == IDLE_SHUTDOWN_ACTION else "fix"
    try:
        reply = act_on_item(edge.core, item_id, person, choice)
    finally:
        edge.on_core_done()  # a request card or notice may be waiting in the outbox
    tell(edge, delivery.body, reply.text, person=person)
    if reply.ok:
        _redraw_digest(edge, delivery.body, item_id)


def snooze_idle_compute(edge: SlackEdge, delivery: Delivery) -> None:
    click = _clicker(edge, delivery)
    if click is None:
        return
    person, action_id, item_id = click
    choice = SNOOZE_ACTIONS.get(action_id)
    if choice is None:
        tell(edge, delivery.body, UNKNOWN_BUTTON, person=person)
        return
    reply = snooze_item(edge.core, item_id, person, choice)
    tell(edge, delivery.body, reply.text, person=person)
    if reply.ok:
        _redraw_digest(edge, delivery.body, item_id)


def register_slack_actions(app: AsyncApp, edge: SlackEdge) -> None:
    """A registrar for `bot.slack.app.build_slack(extra_registrars=...)`."""
    app.action(EXTEND_ACTION)(edge.hand_over(extend_grant))
    app.action(IDLE_FIX_ACTION)(edge.hand_over(fix_idle_compute))
    app.action(IDLE_SHUTDOWN_ACTION)(edge.hand_over(fix_idle_compute))
    app.action(re.compile(re.escape(SNOOZE_PREFIX) + ".+"))(edge.hand_over(snooze_idle_compute))
