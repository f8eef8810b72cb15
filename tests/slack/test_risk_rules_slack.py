"""Approval rules through the real Bolt app and the fake Slack: auto-approval told to the
requester with its rule, a card with the rule, the estimate and the spend, and a rule's
approvers taken from a Slack user group (`usergroups.users.list`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from approvals.config import parse_config
from bot.slack.views.common import APPROVE_ACTION
from bot.wiring import Core, build_core
from tests.fakes.slack_api import FakeSlack
from tests.paths import RULES_CONFIG
from tests.slack.conftest import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CAROL,
    CHANNEL,
    USERS,
    SlackHarness,
    running_bot,
    wait_for,
)
from workspaces.clock import ManualClock

DAVE = "U0DAVE001"
GPU_LEADS = "S0GPULEADS"


@pytest.fixture
def rules_harness(sqlite_url: str, clock: ManualClock) -> Iterator[SlackHarness]:
    text = RULES_CONFIG.read_text().replace(
        "# slack_usergroup: S0GPULEADS", "slack_usergroup: S0GPULEADS"
    )
    core: Core = build_core(parse_config(text), database_url=sqlite_url, clock=clock)
    # Carol is in the Slack user group only, not in the group's YAML members.
    with (
        FakeSlack(
            token=BOT_TOKEN,
            channels={CHANNEL},
            users={**USERS, DAVE: "dave@example.com"},
            usergroups={GPU_LEADS: [CAROL]},
        ) as slack,
        running_bot(core, clock, slack) as harness,
    ):
        yield harness
    core.store.engine.dispose()


def test_short_cpu_access_is_auto_approved_with_its_rule(rules_harness: SlackHarness) -> None:
    rules_harness.command(ALICE, 'access request cpu-cluster --for 2h --reason "quick look"')
    answer = rules_harness.answer_to(ALICE, containing="Auto-approved")
    assert answer.startswith(
        "Auto-approved: CPU cluster, 2h, asked by a member, within policy rule `cpu-short`."
    )
    assert "alice has access to `cpu-cluster`" in answer


def test_gpu_card_shows_rule_estimate_and_spend(rules_harness: SlackHarness) -> None:
    rules_harness.command(ALICE, 'access request gpu-cluster --for 2h --reason "fine-tune"')
    answer = rules_harness.answer_to(ALICE, containing="waiting for group `gpu-approvers`")
    card = rules_harness.card(rules_harness.request_id(answer))
    assert "needs group `gpu-approvers`: GPU cluster (policy rule `gpu`)" in card.all_text
    assert "2 nodes x $3.06/node-hour x 2h = $12.24" in card.all_text
    assert "$0.00 of $500.00 this month (0%); this request adds up to $12.24" in card.all_text
    assert "0 of 24 cores used, room for 4 more nodes of 6 cores" in card.all_text
    assert "cluster gpu-cluster: 2 of 2 nodes free" in card.all_text


def test_slack_user_group_members_approve_and_leads_outside_it_cannot(
    rules_harness: SlackHarness,
) -> None:
    rules_harness.command(ALICE, 'access request gpu-cluster --for 2h --reason "fine-tune"')
    answer = rules_harness.answer_to(ALICE, containing="waiting for group")
    request_id = rules_harness.request_id(answer)
    rules_harness.click(BOB, APPROVE_ACTION, request_id)
    refusal = rules_harness.answer_to(BOB, containing="Only members of group")
    assert "Only members of group `gpu-approvers` (dave, carol)" in refusal
    rules_harness.click(CAROL, APPROVE_ACTION, request_id)
    assert f"Approved #{request_id}" in rules_harness.answer_to(CAROL, containing="Approved")
    calls = [c for c in rules_harness.slack.calls() if c.method == "usergroups.users.list"]
    # Two clicks, one question: the members are kept for a few minutes.
    assert len(calls) == 1
    card = rules_harness.card(request_id)
    wait_for(
        lambda: "approved by carol" in rules_harness.slack.message(CHANNEL, card.ts).all_text,
        what="the card to show carol's approval",
    )


def test_leads_get_the_weekly_cost_digest_by_dm(rules_harness: SlackHarness) -> None:
    # The sweeps run as `amlbot serve` runs them; a workspace with a budget is due at once.
    digest = rules_harness.dm_to(BOB, "Weekly cost digest for `demo`")
    assert "month to date: $0.00 of $500.00 this month (0%)" in digest.all_text
    rules_harness.dm_to(DAVE, "Weekly cost digest for `demo`")
