"""Block Kit for this package's messages: the grant-expiry warning and the idle digest.

Buttons carry only an id (a grant id, an idle item id); the server looks up the rest.
"""

from __future__ import annotations

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

from approvals.idle.actions import SnoozeChoice
from approvals.idle.detection import IdleFinding
from approvals.idle.digest import finding_line, hourly_total, prices_note
from approvals.sweep_tables import IdleItemRow
from bot.slack.views.card import SlackMessage
from bot.slack.views.common import (
    CONTEXT_TEXT_MAX,
    MESSAGE_MAX_BLOCKS,
    SECTION_TEXT_MAX,
    as_payload,
    clip,
    escape,
)
from shared.wording import counted

EXTEND_ACTION = "amlbot.grant.extend"
IDLE_FIX_ACTION = "amlbot.idle.fix"  # Stop instance, Set minimum to 0, or Set idle time
IDLE_SHUTDOWN_ACTION = "amlbot.idle.shutdown"  # an instance's "Set idle shutdown to N min"
SNOOZE_PREFIX = "amlbot.idle.snooze_"
# Action id -> choice: three ids, because the ids within one actions block must differ.
SNOOZE_ACTIONS: dict[str, SnoozeChoice] = {
    "amlbot.idle.snooze_1h": "1h",
    "amlbot.idle.snooze_1d": "1d",
    "amlbot.idle.snooze_changed": "changed",
}
# Header, summary and footer take 3 blocks; each item up to 2. Slack allows 50 per message.
MAX_ITEMS = (MESSAGE_MAX_BLOCKS - 4) // 2


def grant_expiring_message(text: str, grant_id: int) -> SlackMessage:
    blocks: list[Block] = [
        SectionBlock(block_id="warning", text=MarkdownTextObject(text=clip(escape(text), 3000))),
        ActionsBlock(
            block_id="extend",
            elements=[
                ButtonElement(
                    text="Extend…",
                    action_id=EXTEND_ACTION,
                    value=str(grant_id),
                    style="primary",
                )
            ],
        ),
    ]
    return SlackMessage(text=clip(text, 3000), blocks=as_payload(blocks, max_blocks=2))


def _fix_button(item: IdleItemRow, label: str, action_id: str, style: str | None) -> ButtonElement:
    return ButtonElement(
        text=label,
        action_id=action_id,
        value=str(item.id),
        style=style,
        confirm=ConfirmObject(
            title=f"{label}?",
            text=clip(
                f"`{escape(item.compute)}`: team leads change it at once; for anyone "
                f"else a team lead must approve.",
                300,
            ),
            confirm=label,
            deny="Back",
        ),
    )


def _item_buttons(item: IdleItemRow, finding: IdleFinding) -> ActionsBlock:
    elements = []
    label = finding.fix_label
    if label is not None:
        elements.append(_fix_button(item, label, IDLE_FIX_ACTION, "danger"))
    shutdown = finding.idle_shutdown_label
    if shutdown is not None:
        elements.append(_fix_button(item, shutdown, IDLE_SHUTDOWN_ACTION, "primary"))
    words = {"1h": "Snooze 1 h", "1d": "Snooze 1 day", "changed": "Snooze until changed"}
    for action_id, choice in SNOOZE_ACTIONS.items():
        elements.append(ButtonElement(text=words[choice], action_id=action_id, value=str(item.id)))
    return ActionsBlock(block_id=f"idle:{item.id}", elements=elements)


def idle_digest_message(workspace: str, items: list[IdleItemRow]) -> SlackMessage:
    findings = [(item, IdleFinding.from_json(item.finding)) for item in items]
    summary = (
        f"{counted(len(findings), 'idle compute item')} in `{escape(workspace)}`, together "
        f"{hourly_total([finding for _, finding in findings])}."
    )
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(f"Idle compute in {workspace}", 150))),
        SectionBlock(block_id="summary", text=MarkdownTextObject(text=summary)),
    ]
    for item, finding in findings[:MAX_ITEMS]:
        line = clip(escape(finding_line(finding)), SECTION_TEXT_MAX)
        blocks.append(SectionBlock(block_id=f"item:{item.id}", text=MarkdownTextObject(text=line)))
        if item.handled_note:
            note = clip(f":white_check_mark: {escape(item.handled_note)}", CONTEXT_TEXT_MAX)
            blocks.append(
                ContextBlock(block_id=f"idle:{item.id}", elements=[MarkdownTextObject(text=note)])
            )
        else:
            blocks.append(_item_buttons(item, finding))
    left = len(findings) - MAX_ITEMS
    footer = f"{prices_note([finding for _, finding in findings])} On demand: `/aml idle`."
    if left > 0:
        footer = f"{left} more not shown here: `/aml idle`. " + footer
    blocks.append(
        ContextBlock(block_id="prices", elements=[MarkdownTextObject(text=clip(footer, 2000))])
    )
    text = clip(f"Idle compute in {workspace}: {summary}", 3000)
    return SlackMessage(text=text, blocks=as_payload(blocks, max_blocks=MESSAGE_MAX_BLOCKS))
