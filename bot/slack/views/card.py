"""The approval card: who asks, what exactly happens in Azure, and Approve / Deny while
it is pending. The same builder renders every state, so an update replaces the buttons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

from approvals.states import RequestStatus
from approvals.wording import RequestDescription
from bot.slack.views.common import (
    APPROVE_ACTION,
    DENY_ACTION,
    MESSAGE_MAX_BLOCKS,
    SECTION_TEXT_MAX,
    as_payload,
    clip,
    escape,
)

STATUS_ICONS = {
    RequestStatus.PENDING: ":hourglass_flowing_sand:",
    RequestStatus.APPROVED: ":white_check_mark:",
    RequestStatus.EXECUTING: ":gear:",
    RequestStatus.SUCCEEDED: ":white_check_mark:",
    RequestStatus.FAILED: ":x:",
    RequestStatus.DENIED: ":no_entry:",
    RequestStatus.CANCELLED: ":heavy_multiplication_x:",
    RequestStatus.EXPIRED: ":alarm_clock:",
}


@dataclass(frozen=True)
class SlackMessage:
    """What `chat.postMessage` / `chat.update` need: a notification text and blocks."""

    text: str
    blocks: list[dict[str, Any]]


def decision_buttons(request_id: int, block_id: str, summary: str) -> ActionsBlock:
    """Approve / Deny. The buttons carry only the request id; the server decides the rest."""
    return ActionsBlock(
        block_id=block_id,
        elements=[
            ButtonElement(
                text="Approve",
                action_id=APPROVE_ACTION,
                value=str(request_id),
                style="primary",
                confirm=ConfirmObject(
                    title="Approve this request?",
                    text=clip(f"amlbot will carry it out in Azure at once: {summary}", 300),
                    confirm="Approve",
                    deny="Back",
                ),
            ),
            ButtonElement(
                text="Deny…", action_id=DENY_ACTION, value=str(request_id), style="danger"
            ),
        ],
    )


def approval_card(
    description: RequestDescription,
    *,
    requester_mention: str | None = None,
    approvals_so_far: list[str] | None = None,
) -> SlackMessage:
    icon = STATUS_ICONS.get(description.status, "")
    lines = []
    for label, value in description.facts:
        shown = requester_mention if label == "Requested by" and requester_mention else None
        lines.append(f"*{escape(label)}:* {shown or escape(value)}")
    if approvals_so_far:
        lines.append(f"*Approved so far by:* {escape(', '.join(approvals_so_far))}")
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(description.title, 150), emoji=False)),
        SectionBlock(
            block_id="facts", text=MarkdownTextObject(text=clip("\n".join(lines), SECTION_TEXT_MAX))
        ),
        ContextBlock(
            block_id="status",
            elements=[
                MarkdownTextObject(
                    text=clip(f"{icon} *Status:* {escape(description.status_line)}", 2000)
                )
            ],
        ),
    ]
    if description.status == RequestStatus.PENDING:
        blocks.append(decision_buttons(description.request_id, "decision", description.title))
    text = clip(f"{description.title}: {description.status_line}", 3000)
    return SlackMessage(text=text, blocks=as_payload(blocks, max_blocks=MESSAGE_MAX_BLOCKS))


def notice(text: str, *, prefix: str = "") -> SlackMessage:
    """A plain notice: the core's text, escaped, in one section (and as the fallback)."""
    body = clip(prefix + escape(text), SECTION_TEXT_MAX)
    blocks = [SectionBlock(text=MarkdownTextObject(text=body))]
    return SlackMessage(text=clip(text, 3000), blocks=as_payload(blocks, max_blocks=1))
