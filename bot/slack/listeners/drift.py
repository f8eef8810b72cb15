"""The drift report at the Slack edge: one message to the workspace's leads listing each
finding with its button (Revoke it / Revoke again / Re-grant / Set … back), and the
listener of those buttons, which runs `/aml drift fix ID` for the lead who clicked and
redraws the report with the outcome.

Importing this module registers the renderer; `register_slack_drift` adds the listener.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from approvals.drift import FIX_LABELS, findings_of
from approvals.tables import DriftFindingRow, DriftStatus, OutboxRow
from bot.outbox_worker import PermanentDeliveryError
from bot.slack.deliveries import Delivery, id_in
from bot.slack.delivery import DeliveryContext
from bot.slack.edge import SlackEdge
from bot.slack.telling import channel_of, tell
from bot.slack.views.card import SlackMessage
from bot.slack.views.common import (
    CONTEXT_TEXT_MAX,
    MESSAGE_MAX_BLOCKS,
    SECTION_TEXT_MAX,
    as_payload,
    clip,
    escape,
)
from commands.models import DriftFix
from shared.wording import counted

DRIFT_FIX_ACTION = "amlbot.drift.fix"
MAX_FINDINGS = (MESSAGE_MAX_BLOCKS - 3) // 2


def drift_report_message(workspace: str, findings: list[DriftFindingRow]) -> SlackMessage:
    summary = (
        f"Azure differs from the bot's records in {counted(len(findings), 'place')} in "
        f"`{escape(workspace)}`. Each fix is recorded as a request, audited."
    )
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(f"Drift check: {workspace}", 150))),
        SectionBlock(block_id="summary", text=MarkdownTextObject(text=summary)),
    ]
    for finding in findings[:MAX_FINDINGS]:
        line = clip(escape(finding.text), SECTION_TEXT_MAX)
        blocks.append(
            SectionBlock(block_id=f"finding:{finding.id}", text=MarkdownTextObject(text=line))
        )
        if finding.status != DriftStatus.OPEN:
            note = f":white_check_mark: {finding.status} by {finding.handled_by or 'a lead'}"
            blocks.append(
                ContextBlock(elements=[MarkdownTextObject(text=clip(note, CONTEXT_TEXT_MAX))])
            )
            continue
        label = FIX_LABELS[finding.kind]
        blocks.append(
            ActionsBlock(
                block_id=f"drift:{finding.id}",
                elements=[
                    ButtonElement(
                        text=label,
                        action_id=DRIFT_FIX_ACTION,
                        value=str(finding.id),
                        style="danger" if finding.kind != "missing" else "primary",
                        confirm=ConfirmObject(
                            title=f"{label}?",
                            text=clip(escape(finding.text), 300),
                            confirm=label,
                            deny="Back",
                        ),
                    )
                ],
            )
        )
    text = f"Drift check of {workspace}: {counted(len(findings), 'finding')}"
    return SlackMessage(text=text, blocks=as_payload(blocks, max_blocks=MESSAGE_MAX_BLOCKS))


def render_drift_report(row: OutboxRow, context: DeliveryContext) -> None:
    workspace = str(row.payload["workspace"])
    ws = context.core.config.workspaces.get(workspace)
    if ws is None:
        raise PermanentDeliveryError(f"workspace `{workspace}` is no longer configured")
    findings = findings_of(context.core.store, [int(i) for i in row.payload["findings"]])
    message = drift_report_message(workspace, findings)
    if ws.channel:
        context.post(row, "drift", channel=ws.channel, message=message)
        return
    for lead in ws.team_leads:
        context.post(row, f"drift:{lead}", channel=context.user_id(lead), message=message)


def fix_drift(edge: SlackEdge, delivery: Delivery) -> None:
    body = delivery.body
    person = edge.person(delivery)
    if person is None:
        tell(edge, body, edge.core.service.unknown_person().text)
        return
    action = (body.get("actions") or [{}])[0]
    finding_id = id_in(str(action.get("value", "")))
    if finding_id is None:
        tell(edge, body, "That button does not name a drift finding.", person=person)
        return
    with edge.core.store.transaction() as session:
        finding = session.get(DriftFindingRow, finding_id)
    workspace = finding.workspace if finding is not None else None
    reply = edge.run(person, DriftFix(finding_id=finding_id, workspace=workspace), channel_of(body))
    tell(edge, body, reply.text, person=person)
    _redraw(edge, body, finding)


def _redraw(edge: SlackEdge, body: dict[str, Any], finding: DriftFindingRow | None) -> None:
    channel = (body.get("channel") or {}).get("id")
    ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
    if finding is None or not channel or not ts:
        return
    ids = [
        int(block["block_id"].split(":", 1)[1])
        for block in (body.get("message") or {}).get("blocks") or []
        if str(block.get("block_id", "")).startswith("finding:")
    ] or [finding.id]
    message = drift_report_message(finding.workspace, findings_of(edge.core.store, ids))
    edge.client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)


def register_slack_drift(app: AsyncApp, edge: SlackEdge) -> None:
    """A registrar for `bot.slack.app.build_slack(extra_registrars=...)`."""
    app.action(DRIFT_FIX_ACTION)(edge.hand_over(fix_drift))
