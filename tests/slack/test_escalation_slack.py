"""One approver queue through the real Bolt app and the fake Slack: a request escalated to a
fallback approver reaches them as a copy of the card and in their App Home; when one
approver decides, every copy (channel, each DM, each App Home queue) is redrawn together, so
nobody else works the same request."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals.config import AppConfig
from approvals.config_access import EscalationPolicy
from approvals.scheduled import run_due
from bot.slack.views.common import APPROVE_ACTION
from tests.fakes.slack_api import Message
from tests.slack.conftest import ALICE, BOB, CAROL, CHANNEL, SlackHarness, wait_for

ACCESS = 'access request gpu-cluster --for 2h --reason "fine-tune BERT"'


@pytest.fixture
def demo_config(demo_config: AppConfig) -> AppConfig:
    """The demo with cards in the lead's DMs too, escalating to carol after an hour."""
    ws = demo_config.workspaces["demo"]
    escalation = EscalationPolicy(
        remind_after=timedelta(minutes=30),
        escalate_after=timedelta(hours=1),
        fallback_approvers=["carol"],
    )
    policy = ws.policy.model_copy(update={"escalation": escalation})
    demo = ws.model_copy(update={"policy": policy, "dm_leads": True})
    return demo_config.model_copy(update={"workspaces": {"demo": demo}})


def card_in(harness: SlackHarness, channel: str, request_id: int) -> Message:
    return harness.card(request_id, channel=channel)


def showing(harness: SlackHarness, card: Message, text: str) -> Message:
    return wait_for(
        lambda: m if text in (m := harness.slack.message(card.channel, card.ts)).all_text else None,
        what=f"the card in {card.channel} to show {text!r}",
    )


def home_showing(harness: SlackHarness, user: str, text: str) -> str:
    def find() -> str | None:
        view = harness.slack.home_view(user)
        return str(view.view) if view and text in str(view.view) else None

    return wait_for(find, what=f"{user}'s Home showing {text!r}")


def test_escalation_reaches_the_fallback_and_one_decision_redraws_every_copy(
    harness: SlackHarness,
) -> None:
    assert harness.command(ALICE, ACCESS).status == 200
    harness.answer_to(ALICE, containing="is waiting")
    in_channel = card_in(harness, CHANNEL, 1)
    in_bobs_dm = card_in(harness, BOB, 1)
    harness.open_home(BOB)
    home_showing(harness, BOB, "Waiting for your decision")

    harness.clock.advance(timedelta(minutes=30))
    run_due(harness.core, harness.core.service.workflow, harness.clock.now())
    harness.wake_outbox()
    harness.dm_to(BOB, "has waited 30m for a team lead")

    harness.clock.advance(timedelta(minutes=30))
    run_due(harness.core, harness.core.service.workflow, harness.clock.now())
    harness.wake_outbox()
    in_carols_dm = card_in(harness, CAROL, 1)
    for card in (in_channel, in_bobs_dm, in_carols_dm):
        showing(harness, card, "carol may decide it too")
    home_showing(harness, CAROL, "#1")

    assert harness.click(CAROL, APPROVE_ACTION, 1, card=in_carols_dm).status == 200
    harness.answer_to(CAROL, containing="Approved #1")
    for card in (in_channel, in_bobs_dm, in_carols_dm):
        decided = showing(harness, card, "approved by carol")
        assert not [b for b in decided.blocks if b["type"] == "actions"]
    home_showing(harness, BOB, "Nothing is waiting for you")
