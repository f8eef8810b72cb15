"""Helpers every view uses: Slack's escaping, its size limits, and model conversion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import Block

# Slack's limits that slack_sdk's models do not check on conversion.
MESSAGE_MAX_BLOCKS = 50
SURFACE_MAX_BLOCKS = 100  # modals and App Home
SECTION_TEXT_MAX = 3000
CONTEXT_TEXT_MAX = 2000  # mrkdwn text in a context element is not checked by slack_sdk
FALLBACK_TEXT_MAX = 3000  # the message's `text`; Slack truncates at 40k, we stay readable

APPROVE_ACTION = "amlbot.approve"
DENY_ACTION = "amlbot.deny"
DENY_MODAL = "amlbot.deny_reason"
JOB_MODAL = "amlbot.job_submit"
DATASTORE_MODAL = "amlbot.datastore_register"


class ViewTooLargeError(ValueError):
    """A view broke a Slack limit slack_sdk does not check; a bug in a builder."""


def escape(text: str) -> str:
    """Slack's three control characters, so text from people can never become a mention
    (`<!channel>`) or a link: https://api.slack.com/reference/surfaces/formatting#escaping"""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Slash command text arrives with the three characters escaped; undo that."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mention(user_id: str | None, fallback: str) -> str:
    return f"<@{user_id}>" if user_id else f"*{escape(fallback)}*"


def as_payload(blocks: Sequence[Block], *, max_blocks: int) -> list[dict[str, Any]]:
    """Convert blocks (slack_sdk validates each) and check what it leaves out: the number
    of blocks and unique block ids."""
    if len(blocks) > max_blocks:
        raise ViewTooLargeError(f"{len(blocks)} blocks; Slack allows {max_blocks}")
    converted = [block.to_dict() for block in blocks]
    ids = [b["block_id"] for b in converted if b.get("block_id")]
    if len(ids) != len(set(ids)):
        raise ViewTooLargeError(f"duplicate block_id in {ids}")
    for block in converted:
        for element in block.get("elements", []) if block["type"] == "context" else []:
            if len(element.get("text", "")) > CONTEXT_TEXT_MAX:
                raise ViewTooLargeError("context text over 2000 characters")
    return converted
