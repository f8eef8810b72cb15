"""A pending request reminds its approvers, then escalates to fallback approvers, who may
then decide it; the card says so. Each step happens once, whatever the replicas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from approvals import notice_kinds as kinds
from approvals.config import AppConfig
from approvals.config_access import EscalationPolicy
from approvals.escalation import REQUEST_ESCALATED, REQUEST_REMINDER, escalate_pending_requests
from approvals.tables import RequestRow
from approvals.wording import describe_request
from bot.wiring import Core
from tests.notify.conftest import notices
from workspaces.clock import ManualClock

ACCESS = 'access request gpu-cluster --for 2h --reason "fine-tune BERT"'


def escalating(config: AppConfig) -> AppConfig:
    ws = config.workspaces["demo"]
    escalation = EscalationPolicy(
        remind_after=timedelta(minutes=30),
        escalate_after=timedelta(hours=1),
        fallback_approvers=["carol"],
    )
    policy = ws.policy.model_copy(update={"escalation": escalation})
    return config.model_copy(
        update={"workspaces": {"demo": ws.model_copy(update={"policy": policy})}}
    )


@pytest.fixture
def esc(
    make_core: Callable[[AppConfig, str], Core], demo_config: AppConfig, sqlite_url: str
) -> Core:
    return make_core(escalating(demo_config), sqlite_url)


def card_of(core: Core, request_id: int) -> str:
    with core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        return describe_request(row, core.config).as_text()


def test_the_kinds_are_the_ones_the_edges_render() -> None:
    assert REQUEST_REMINDER == kinds.REQUEST_REMINDER


def test_approvers_are_reminded_once_after_remind_after(esc: Core, clock: ManualClock) -> None:
    assert esc.service.handle_text("alice", ACCESS).ok
    clock.advance(timedelta(minutes=29))
    assert escalate_pending_requests(esc.store, esc.config, clock.now()).nudged == []
    clock.advance(timedelta(minutes=1))
    assert escalate_pending_requests(esc.store, esc.config, clock.now()).nudged == [1]
    assert escalate_pending_requests(esc.store, esc.config, clock.now()).nudged == []
    (reminder,) = notices(esc, REQUEST_REMINDER)
    assert reminder["leads"] == ["bob"]
    assert "has waited 30m for a team lead" in reminder["text"]


def test_after_escalate_after_the_fallback_gets_it_and_the_card_says_so(
    esc: Core, clock: ManualClock
) -> None:
    assert esc.service.handle_text("alice", ACCESS).ok
    refused = esc.service.handle_text("carol", "approve 1")
    assert not refused.ok  # not yet escalated: carol is no approver
    clock.advance(timedelta(hours=1))
    done = escalate_pending_requests(esc.store, esc.config, clock.now())
    assert done.escalated == [1]
    assert escalate_pending_requests(esc.store, esc.config, clock.now()).escalated == []
    (copy,) = notices(esc, REQUEST_ESCALATED)
    assert copy["approvers"] == ["carol"] and "Escalated to you: request #1" in copy["text"]
    assert "Escalated: escalated 2026-01-05 10:00 UTC after 1h without a decision; carol may " in (
        card_of(esc, 1)
    )
    approved = esc.service.handle_text("carol", "approve 1")
    assert approved.ok, approved.text
    assert "Approved #1" in approved.text


def test_a_request_decided_before_escalation_is_never_escalated(
    esc: Core, clock: ManualClock
) -> None:
    assert esc.service.handle_text("alice", ACCESS).ok
    assert esc.service.handle_text("bob", "approve 1").ok
    clock.advance(timedelta(hours=2))
    done = escalate_pending_requests(esc.store, esc.config, clock.now())
    assert (done.nudged, done.escalated) == ([], [])


def test_escalation_without_fallbacks_is_a_policy_error_naming_the_key() -> None:
    from approvals.config import parse_config
    from approvals.config_errors import ConfigError

    text = """
workspaces:
  demo:
    azure: {subscription_id: s, resource_group: r, workspace_name: w}
    team_leads: [U0BOB0001]
    policy:
      escalation: {escalate_after: 1h}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.errors == [
        "workspaces.demo.policy.escalation: escalate_after needs fallback_approvers to "
        "escalate to, e.g. fallback_approvers: [dana]"
    ]
