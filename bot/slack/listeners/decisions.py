"""Approve / Deny buttons (on cards and in App Home) and the deny-reason modal.

A button carries only the request id. Who may decide is checked by the core on every
click: a requester or a non-lead gets an ephemeral refusal, and the core audits it.
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest

from approvals.replies import Reply
from approvals.states import RequestStatus
from approvals.wording import describe_request, status_line
from bot.slack.deliveries import Delivery, id_in
from bot.slack.edge import SlackEdge
from bot.slack.telling import channel_of, metadata, tell
from bot.slack.views.common import APPROVE_ACTION, DENY_ACTION, DENY_MODAL
from bot.slack.views.modals import deny_modal
from commands import models as m
from commands.plain_text import first_unstorable, unstorable_message
from shared.errors import UserError, secret_refusal
from shared.secrets import find_secret

NOT_OURS = "That button does not belong to a request amlbot knows; nothing was done."


def clicked_request_id(body: dict[str, Any]) -> int | None:
    actions = body.get("actions") or [{}]
    value = str(actions[0].get("value", ""))
    return id_in(value)


def deny_precheck(edge: SlackEdge, person: str, request_id: int) -> tuple[Reply | None, str]:
    """Before asking a lead for a reason: (a refusal to show, or None; the card's title).

    Someone who may not deny is refused through the core's own Deny, so the attempt is
    audited exactly like a typed `/aml deny`; it cannot deny anything, because the core
    refuses before any change for a non-lead or the requester.
    """
    service = edge.core.service
    try:
        row = service.workflow.find(request_id)
    except UserError as exc:
        return Reply(text=exc.render(), ok=False), ""
    title = describe_request(row, edge.core.config).title
    if not service.workflow.may_decide(person, row):
        return edge.run(person, m.Deny(request_id=request_id, reason="(Deny button)"), None), title
    if row.status != RequestStatus.PENDING:
        text = f"Request #{row.id} is no longer pending: {status_line(row)}."
        return Reply(text=text, ok=False), title
    return None, title


def _clicker(edge: SlackEdge, delivery: Delivery) -> tuple[str, int] | None:
    """(person, request id) of a click to act on, after telling anyone it is not for."""
    body = delivery.body
    person = edge.person(delivery)
    if person is None:
        tell(edge, body, edge.core.service.unknown_person().text)
        return None
    request_id = clicked_request_id(body)
    if request_id is None:
        tell(edge, body, NOT_OURS, person=person)
        return None
    return person, request_id


def approve(edge: SlackEdge, delivery: Delivery) -> None:
    clicked = _clicker(edge, delivery)
    if clicked is None:
        return
    person, request_id = clicked
    reply = edge.run(person, m.Approve(request_id=request_id), channel_of(delivery.body))
    tell(edge, delivery.body, reply.text, person=person)


def ask_deny_reason(edge: SlackEdge, delivery: Delivery) -> None:
    clicked = _clicker(edge, delivery)
    if clicked is None:
        return
    person, request_id = clicked
    body = delivery.body
    refusal, title = deny_precheck(edge, person, request_id)
    if refusal is not None:
        tell(edge, body, refusal.text, person=person)
        return
    private = json.dumps(
        {
            "request_id": request_id,
            "channel": channel_of(body),
            "response_url": body.get("response_url"),
            "from_home": (body.get("view") or {}).get("type") == "home",
        }
    )
    edge.client.views_open(
        trigger_id=body["trigger_id"], view=deny_modal(request_id, title, private)
    )


def deny(edge: SlackEdge, delivery: Delivery) -> None:
    body = delivery.body
    request_id = metadata(body).get("request_id")
    person = edge.person(delivery)
    if not isinstance(request_id, int) or person is None:
        return
    refusal = edge.refuse_secret(person, delivery)
    if refusal is not None:
        tell(edge, body, refusal.text, person=person)
        return
    command = m.Deny(request_id=request_id, reason=reason_of(body))
    reply = edge.run(person, command, metadata(body).get("channel"))
    tell(edge, body, reply.text, person=person)


def reason_of(body: dict[str, Any]) -> str:
    values = (body.get("view") or {}).get("state", {}).get("values", {})
    return str(values.get("reason", {}).get("reason", {}).get("value") or "").strip()[:500]


def register(app: AsyncApp, edge: SlackEdge) -> None:
    async def validate_reason(
        ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        reason = reason_of(body)
        char = first_unstorable(reason)
        if len(reason) < 3 or char is not None:
            problem = (
                unstorable_message("The reason", char)
                if char is not None
                else "Give the requester a reason of at least 3 characters."
            )
            await ack(response_action="errors", errors={"reason": problem})
            return
        secret = find_secret(reason_of(body))
        # The lead can fix a reason holding a secret in place; the core still refuses and
        # audits it (the inbox keeps the delivery with the secret withheld).
        errors: dict[str, Any] = (
            {}
            if secret is None
            else {
                "response_action": "errors",
                "errors": {"reason": secret_refusal(secret).render()[:150]},
            }
        )
        await edge.accept_then_ack(deny_job, ack, body, context, request, **errors)

    deny_job = edge.register_job(deny)
    app.action(APPROVE_ACTION)(edge.hand_over(approve))
    # The modal must open within the trigger's 3 s: this process opens it after the ack.
    app.action(DENY_ACTION)(edge.hand_over(ask_deny_reason, "edge"))
    app.view(DENY_MODAL)(validate_reason)
