"""The App Home tab: your pending requests, active grants with time left, recent jobs;
for leads, the requests waiting for them with the same Approve / Deny as the cards."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from approvals.overview import HomeData
from approvals.wording import describe_grant, describe_job_row, short_ref, status_line
from bot.slack.views.card import decision_buttons
from bot.slack.views.common import SECTION_TEXT_MAX, SURFACE_MAX_BLOCKS, as_payload, clip, escape


# Each list is cut here; with two blocks per waiting request the Home stays under 100.
def _lines(items: list[str], empty: str, more: int = 0, see: str = "") -> SectionBlock:
    text = "\n".join(f"• {item}" for item in items) if items else f"_{empty}_"
    if more > 0:
        text += f"\n…and {more} more: `{see}`"
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT_MAX)))


def home_view(data: HomeData, notice: str | None = None) -> dict[str, Any]:
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=f"amlbot for {clip(data.person, 100)}")),
    ]
    if notice:
        blocks.append(
            SectionBlock(
                block_id="notice",
                text=MarkdownTextObject(text=clip(f":information_source: {escape(notice)}", 3000)),
            )
        )
    if data.is_lead:
        blocks.append(HeaderBlock(text=PlainTextObject(text="Waiting for your decision")))
        if not data.waiting:
            blocks.append(_lines([], "Nothing is waiting for you."))
        for request in data.waiting:
            text = (
                f"*{short_ref(request.id)} {escape(request.summary)}*\n"
                f"asked by {escape(request.requester)} in `{escape(request.workspace)}`"
                + (f": {escape(request.reason)}" if request.reason else "")
                + f"\n{escape(status_line(request))}"
            )
            blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT_MAX))))
            blocks.append(
                decision_buttons(request.id, f"home-decide-{request.id}", request.summary)
            )
        hidden = data.waiting_total - len(data.waiting)
        if hidden > 0:
            blocks.append(_lines([], "", hidden, "/aml request list"))
    blocks += [
        DividerBlock(),
        HeaderBlock(text=PlainTextObject(text="Your pending requests")),
        _lines(
            [
                f"{short_ref(r.id)} {escape(r.summary)}: {escape(status_line(r))}"
                for r in data.pending
            ],
            "None. Ask with `/aml access request CLUSTER --reason ...`.",
        ),
        HeaderBlock(text=PlainTextObject(text="Your active access grants")),
        _lines(
            [escape(describe_grant(g, data.now)) for g in data.grants],
            "None.",
        ),
        HeaderBlock(text=PlainTextObject(text="Your recent jobs")),
        _lines([escape(describe_job_row(j)) for j in data.jobs], "None yet."),
        ContextBlock(
            elements=[MarkdownTextObject(text="Type `/aml help` in any channel for every command.")]
        ),
    ]
    view = View(type="home", blocks=as_payload(blocks, max_blocks=SURFACE_MAX_BLOCKS))
    return view.to_dict()
