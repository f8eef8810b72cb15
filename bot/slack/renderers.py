"""The core's outbox kinds, rendered for Slack (see `approvals/outbox.py` for the kinds).

- `request.opened`: the approval card in the workspace's channel, and in each lead's DM
  when the workspace has `dm_leads` (or no channel).
- `request.updated`: every card of the request redrawn in place with `chat.update`, from
  the request's current state, so no card keeps a live button once it is decided.
- `person.notice` / `channel.notice`: see `DeliveryContext.tell_person` / `tell_channel`.
- the notices of `approvals/notice_kinds.py`: grant expiring (with Extend), reminders to
  leads, idle digests (with their buttons, listened to in `listeners/notices.py`).

`RENDERERS` at the bottom is the whole table, kind by kind.
"""

from __future__ import annotations

from approvals import outbox
from approvals.directory import fallback_approvers
from approvals.drift import DRIFT_REPORT
from approvals.escalation import REQUEST_ESCALATED
from approvals.idle.digest import digest_items
from approvals.notice_kinds import GRANT_EXPIRING, IDLE_DIGEST, REQUEST_REMINDER
from approvals.overview import home_data
from approvals.tables import OutboxRow, RequestRow, RequestStatus
from approvals.wording import describe_request
from bot.outbox_worker import PermanentDeliveryError
from bot.slack.delivery import DeliveryContext, Renderer, SlackRefusedError
from bot.slack.listeners.drift import render_drift_report
from bot.slack.views.card import SlackMessage, approval_card, notice
from bot.slack.views.common import mention
from bot.slack.views.home import home_view
from bot.slack.views.notices import grant_expiring_message, idle_digest_message

# chat.update answers these when the card was deleted from Slack: post it again instead.
CARD_GONE = frozenset({"message_not_found", "cant_update_message"})


def _load(context: DeliveryContext, request_id: int) -> tuple[RequestRow, list[str]]:
    request, votes = context.core.service.workflow.with_votes(request_id)
    if request is None:
        raise PermanentDeliveryError(f"request #{request_id} does not exist")
    return request, votes


def card_message(context: DeliveryContext, request: RequestRow, votes: list[str]) -> SlackMessage:
    pending_votes = votes if request.status == RequestStatus.PENDING else []
    description = describe_request(request, context.core.config, pending_votes)
    requester_id = context.identity.directory.slack_id_of(request.requester)
    return approval_card(
        description,
        requester_mention=mention(requester_id, request.requester),
        approvals_so_far=pending_votes,
    )


def post_cards(row: OutboxRow, context: DeliveryContext) -> None:
    request, votes = _load(context, int(row.payload["request_id"]))
    message = card_message(context, request, votes)
    ws = context.core.config.workspaces[request.workspace]
    if ws.channel:
        channel, ts = context.post(row, "card:channel", channel=ws.channel, message=message)
        context.cards.save(request.id, channel, ts, "channel", request.version)
    if ws.dm_leads or not ws.channel:
        for lead in ws.team_leads:
            if lead == request.requester:
                continue
            user_id = context.user_id(lead)
            channel, ts = context.post(row, f"card:dm:{lead}", channel=user_id, message=message)
            context.cards.save(request.id, channel, ts, "dm", request.version)
    refresh_queues(context, request)


def update_cards(row: OutboxRow, context: DeliveryContext) -> None:
    request, votes = _load(context, int(row.payload["request_id"]))
    cards = context.cards.cards_for(request.id)
    if not cards:
        if request.approvals_needed == 0:
            return  # ran within policy at once: it never had a card
        post_cards(row, context)  # its card was never delivered: show it as it is now
        return
    message = card_message(context, request, votes)
    for card in cards:
        if card.shown_version >= request.version:
            continue  # already shows this state or a newer one
        try:
            context.call(
                "chat.update",
                channel=card.channel,
                ts=card.ts,
                text=message.text,
                blocks=message.blocks,
            )
        except SlackRefusedError as exc:
            if exc.error not in CARD_GONE:
                raise
            channel, ts = context.post(
                row, f"repost:{card.id}", channel=card.channel, message=message
            )
            context.cards.save(request.id, channel, ts, card.placement, request.version)
            continue
        context.cards.shown(card.id, request.version)
    refresh_queues(context, request, votes)


def approvers_of(context: DeliveryContext, request: RequestRow) -> list[str]:
    """Who may decide the request: the workspace's leads, and its fallback approvers once
    it is escalated; never the requester."""
    ws = context.core.config.workspaces[request.workspace]
    people = list(ws.team_leads)
    if request.escalated_at is not None:
        people += fallback_approvers(ws, context.core.config, request.requester)
    return [p for p in dict.fromkeys(people) if p != request.requester]


def refresh_queues(
    context: DeliveryContext, request: RequestRow, votes: list[str] | None = None
) -> None:
    """Every approver's App Home queue redrawn with the request as it is now, like its cards,
    so no approver sees a live button on a request someone else already took. Who decided
    or voted is skipped: the click's answer already redrew their Home (with its notice)."""
    acted = {request.decided_by, *(votes or [])}
    for person in approvers_of(context, request):
        if person in acted:
            continue
        user_id = context.identity.slack_id_of(person)
        if user_id is None:
            continue
        context.call(
            "views.publish",
            user_id=user_id,
            view=home_view(home_data(context.core, context.core.service.directory, person)),
        )


def post_escalated_cards(row: OutboxRow, context: DeliveryContext) -> None:
    """A copy of the card to each fallback approver, kept with the request's other cards so
    that every copy is redrawn together; their App Home queues show it too."""
    request, votes = _load(context, int(row.payload["request_id"]))
    if request.status != RequestStatus.PENDING:
        return  # decided before the escalation reached Slack: the other cards say so
    message = card_message(context, request, votes)
    for person in row.payload.get("approvers") or []:
        user_id = context.user_id(str(person))
        channel, ts = context.post(
            row, f"card:escalated:{person}", channel=user_id, message=message
        )
        context.cards.save(request.id, channel, ts, "dm", request.version)
    refresh_queues(context, request)


def person_notice(row: OutboxRow, context: DeliveryContext) -> None:
    payload = row.payload
    context.tell_person(
        row, str(payload["person"]), str(payload["text"]), payload.get("request_id")
    )


def channel_notice(row: OutboxRow, context: DeliveryContext) -> None:
    payload = row.payload
    context.tell_channel(
        row, str(payload["workspace"]), str(payload["text"]), payload.get("request_id")
    )


def render_grant_expiring(row: OutboxRow, context: DeliveryContext) -> None:
    payload = row.payload
    user_id = context.user_id(str(payload["person"]))
    message = grant_expiring_message(str(payload["text"]), int(payload["grant_id"]))
    context.post(row, "dm", channel=user_id, message=message)


def render_idle_digest(row: OutboxRow, context: DeliveryContext) -> None:
    workspace = str(row.payload["workspace"])
    ws = context.core.config.workspaces.get(workspace)
    if ws is None:
        raise PermanentDeliveryError(f"workspace `{workspace}` is no longer configured")
    items = digest_items(context.core, int(row.payload["digest_id"]))
    if not items:
        return
    message = idle_digest_message(workspace, items)
    if ws.channel:
        context.post(row, "digest", channel=ws.channel, message=message)
        return
    for lead in ws.team_leads:  # no channel: the leads, who can act on it, by DM
        context.post(row, f"digest:{lead}", channel=context.user_id(lead), message=message)


def render_request_reminder(row: OutboxRow, context: DeliveryContext) -> None:
    """One reply in the card's thread naming every lead to remind, and a DM to each (a
    mention does not reach a lead who is not in the channel)."""
    payload = row.payload
    text = str(payload["text"])
    leads = [str(lead) for lead in payload.get("leads") or []]
    if not leads:
        return
    user_ids = {lead: context.user_id(lead) for lead in leads}
    card = context.cards.channel_card(int(payload["request_id"]))
    if card is not None:
        mentions = " ".join(f"<@{user_id}>" for user_id in user_ids.values())
        context.post(
            row,
            "thread",
            channel=card.channel,
            thread_ts=card.ts,
            message=notice(text, prefix=f"{mentions} "),
        )
    if card is None or context.dm_notices:
        for lead, user_id in user_ids.items():
            context.post(row, f"dm:{lead}", channel=user_id, message=notice(text))


# Every outbox kind Slack shows, and how. A kind missing here waits in the outbox (a newer
# replica's kind during a rolling deploy) instead of being dropped.
RENDERERS: dict[str, Renderer] = {
    outbox.REQUEST_OPENED: post_cards,
    outbox.REQUEST_UPDATED: update_cards,
    outbox.PERSON_NOTICE: person_notice,
    outbox.CHANNEL_NOTICE: channel_notice,
    GRANT_EXPIRING: render_grant_expiring,
    REQUEST_REMINDER: render_request_reminder,
    IDLE_DIGEST: render_idle_digest,
    REQUEST_ESCALATED: post_escalated_cards,
    DRIFT_REPORT: render_drift_report,
}
