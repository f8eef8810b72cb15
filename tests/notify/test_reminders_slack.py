"""A pending request's reminder through the real Slack deliverer: one reply in the card's
thread naming every lead who has not decided, and a DM to each of them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals.config import AppConfig
from approvals.reminders import remind_pending_requests
from bot.wiring import Core
from tests.notify.conftest import BOB, CAROL, CHANNEL, NotifyBot
from workspaces.clock import ManualClock

ACCESS = 'access request gpu-cluster --for 2h --reason "fine-tune BERT"'


@pytest.fixture
def demo_config(demo_config: AppConfig) -> AppConfig:
    """The demo with two team leads, bob and carol."""
    demo = demo_config.workspaces["demo"].model_copy(
        update={"team_leads": ["bob", "carol"], "data_scientists": ["alice"]}
    )
    return demo_config.model_copy(update={"workspaces": {"demo": demo}})


def test_one_reminder_in_the_thread_and_a_dm_per_lead(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    assert core.service.handle_text("alice", ACCESS).ok
    notify_bot.deliver()
    card = next(m for m in notify_bot.slack.messages_in(CHANNEL) if m.text.startswith("#1 "))
    clock.advance(timedelta(hours=22, seconds=1))
    assert remind_pending_requests(core, clock.now()) == [1]
    notify_bot.deliver()

    in_thread = [m for m in notify_bot.slack.replies(CHANNEL, card.ts) if "Reminder" in m.all_text]
    assert len(in_thread) == 1
    assert f"<@{BOB}>" in in_thread[0].all_text and f"<@{CAROL}>" in in_thread[0].all_text
    for lead in (BOB, CAROL):
        dms = [m for m in notify_bot.slack.messages_in(lead) if "Reminder" in m.all_text]
        assert len(dms) == 1, lead
