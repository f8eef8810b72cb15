"""Approval rules by risk and budget, driven through the core as an edge drives it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from approvals.config import load_config, parse_config
from approvals.payloads import JobPayload
from approvals.service_risk import History, explain_request
from approvals.states import RequestStatus
from approvals.tables import AuditRow, JobRow, RequestRow
from bot.wiring import Core
from commands.models import AccessRequest
from commands.parser import parse_command
from tests.paths import RULES_CONFIG, UNPRICED_REGION, rules_config_in
from workspaces.clock import ManualClock

ENV = "azureml:AzureML-sklearn-1.5@latest"


@pytest.fixture
def rules_core(make_core: Callable[..., Core], database_url: str) -> Core:
    return make_core(load_config(RULES_CONFIG), database_url)


def request_row(core: Core, request_id: int) -> RequestRow:
    with core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        session.expunge(row)
        return row


def record_spend(core: Core, clock: ManualClock, hours: float, nodes: int = 2) -> None:
    """A finished gpu-cluster job in the bot's records, costing nodes x $3.06 x hours."""
    now = clock.now()
    with core.store.transaction() as session:
        request = RequestRow(
            workspace="demo",
            action="job",
            requester="carol",
            payload=JobPayload(
                compute="gpu-cluster",
                environment="e@latest",
                command="python t.py",
                instances=nodes,
            ),
            summary="earlier job",
            status=RequestStatus.SUCCEEDED.value,
            created_at=now,
        )
        session.add(request)
        session.flush()
        session.add(
            JobRow(
                workspace="demo",
                name=f"earlier-{request.id}",
                request_id=request.id,
                requester="carol",
                compute="gpu-cluster",
                status="Completed",
                submitted_at=now - timedelta(hours=hours),
                updated_at=now,
                ended_at=now,
                following=False,
            )
        )


def test_short_cpu_access_is_auto_approved_and_says_which_rule(rules_core: Core) -> None:
    reply = rules_core.service.handle_text(
        "alice", "/aml access request cpu-cluster --for 2h --reason 'quick look'"
    )
    assert reply.ok, reply.text
    assert reply.text.startswith(
        "Auto-approved: CPU cluster, 2h, asked by a member, within policy rule `cpu-short`."
    )
    assert request_row(rules_core, reply.request_id or 0).status == RequestStatus.SUCCEEDED


def test_auto_approval_is_audited_with_its_rule(rules_core: Core) -> None:
    rules_core.service.handle_text(
        "alice", "/aml access request cpu-cluster --for 2h --reason 'quick look'"
    )
    with rules_core.store.transaction() as session:
        events = list(session.scalars(select(AuditRow).where(AuditRow.actor == "alice")))
    requested = next(e for e in events if e.action == "access.requested")
    assert "policy rule `cpu-short`" in requested.detail["policy"]
    with rules_core.store.transaction() as session:
        (decision,) = session.scalars(select(AuditRow).where(AuditRow.actor == "policy"))
    assert (decision.action, decision.outcome, decision.target) == (
        "access.approved",
        "approved",
        "#1",
    )
    assert decision.detail["rule"] == "cpu-short"


def test_long_cpu_access_falls_through_to_the_built_in_policy(rules_core: Core) -> None:
    reply = rules_core.service.handle_text(
        "alice", "/aml access request cpu-cluster --for 6h --reason 'long one'"
    )
    assert reply.ok, reply.text
    assert "is waiting for a team lead of `demo` (bob, dave)" in reply.text
    assert request_row(rules_core, reply.request_id or 0).status == RequestStatus.PENDING


def test_gpu_access_goes_to_the_named_group_only(rules_core: Core) -> None:
    reply = rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 2h --reason 'fine-tune'"
    )
    assert "waiting for group `gpu-approvers`" in reply.text
    assert "Policy: needs group `gpu-approvers`: GPU cluster (policy rule `gpu`)." in reply.text
    assert "Est. cost: 2 nodes x $3.06/node-hour x 2h = $12.24." in reply.text
    request_id = reply.request_id or 0
    refused = rules_core.service.handle_text("bob", f"/aml approve {request_id}")
    assert not refused.ok
    assert "Only members of group `gpu-approvers` (dave)" in refused.text
    approved = rules_core.service.handle_text("dave", f"/aml approve {request_id}")
    assert approved.ok, approved.text
    assert request_row(rules_core, request_id).status == RequestStatus.SUCCEEDED


def test_a_regrant_within_a_week_is_auto_approved(rules_core: Core, clock: ManualClock) -> None:
    first = rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 2h --reason 'fine-tune'"
    )
    rules_core.service.handle_text("dave", f"/aml approve {first.request_id}")
    clock.advance(timedelta(days=2))
    again = rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 2h --reason 'more fine-tuning'"
    )
    assert again.ok, again.text
    assert "within policy rule `regrant`" in again.text
    assert "same access granted 2d ago" in again.text


def test_a_costly_job_needs_two_distinct_leads(rules_core: Core) -> None:
    rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 8h --reason 'long training'"
    )
    rules_core.service.handle_text("dave", "/aml approve 1")
    reply = rules_core.service.handle_text(
        "alice",
        f"/aml job submit --compute gpu-cluster --environment {ENV} --command 'python t.py' "
        "--instances 2 --max-duration 20h",
    )
    assert "needs two team leads: est. $122.40 is above $100.00 (policy rule `costly`)" in (
        reply.text
    )
    assert "is waiting for two team leads of `demo` (bob, dave)" in reply.text
    row = request_row(rules_core, reply.request_id or 0)
    assert row.approvals_needed == 2
    assert isinstance(row.payload, JobPayload) and row.payload.max_duration_seconds == 20 * 3600
    first = rules_core.service.handle_text("bob", f"/aml approve {row.id}")
    assert "1 of 2" in first.text
    second = rules_core.service.handle_text("dave", f"/aml approve {row.id}")
    assert second.ok, second.text
    assert request_row(rules_core, row.id).status == RequestStatus.SUCCEEDED


def test_nearly_spent_budget_needs_two_leads(rules_core: Core, clock: ManualClock) -> None:
    record_spend(rules_core, clock, hours=66)  # 2 x 3.06 x 66 = $403.92 of $500
    reply = rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 1h --reason 'one more run'"
    )
    assert "policy rule `budget-nearly-spent`" in reply.text
    assert "budget 82% used with this request (above 80%)" in reply.text
    card = rules_core.service.handle_text("bob", f"/aml request show {reply.request_id}")
    assert "Spend: $403.92 of $500.00 this month (81%); this request adds up to $6.12" in (
        card.text
    )


def test_over_budget_is_refused_with_the_rule(rules_core: Core, clock: ManualClock) -> None:
    record_spend(rules_core, clock, hours=80)  # $489.60
    reply = rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 4h --reason 'one more run'"
    )
    assert not reply.ok
    assert (
        "policy rule `over-budget` refuses it: over budget: $514.08 of the $500.00 monthly "
        "budget" in reply.text
    )


def test_last_months_spend_does_not_count(rules_core: Core, clock: ManualClock) -> None:
    record_spend(rules_core, clock, hours=80)
    clock.advance(timedelta(days=31))
    reply = rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 4h --reason 'new month'"
    )
    assert "policy rule `gpu`" in reply.text


def test_a_sku_outside_the_allowed_list_is_refused(rules_core: Core) -> None:
    reply = rules_core.service.handle_text(
        "alice", "/aml access request big-gpu --for 1h --reason 'huge model'"
    )
    assert not reply.ok
    assert reply.text.startswith(
        "Not submitted: policy rule `sku-allowed` refuses it: only the CPU and NC6s v3 sizes "
        "are allowed in this workspace. Ask a team lead of `demo`"
    )


def test_job_card_shows_its_estimate_and_time_limit(rules_core: Core) -> None:
    rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 8h --reason 'training'"
    )
    rules_core.service.handle_text("dave", "/aml approve 1")
    reply = rules_core.service.handle_text(
        "alice",
        f"/aml job submit --compute gpu-cluster --environment {ENV} --command 'python t.py'",
    )
    card = rules_core.service.handle_text("dave", f"/aml request show {reply.request_id}")
    # No --max-duration: the policy's default limit (4h) is the estimate and the timeout.
    assert "Est. cost: 1 node x $3.06/node-hour x 4h = $12.24" in card.text
    assert "Time limit: 4h" in card.text


def test_max_duration_beyond_policy_is_refused_naming_the_flag(rules_core: Core) -> None:
    reply = rules_core.service.handle_text(
        "alice",
        f"/aml job submit --compute cpu-cluster --environment {ENV} --command 'python t.py' "
        "--max-duration 8d",
    )
    assert not reply.ok
    assert (
        "`--max-duration`: 8d (192h) is longer than workspace `demo` allows: at most 7d (168h)."
        in reply.text
    )


def test_access_beyond_policy_is_refused_in_the_hours_the_person_may_have_typed(
    core: Core,
) -> None:
    reply = core.service.handle_text(
        "alice", "/aml access request cpu-cluster --for 99h --reason 'long run'"
    )
    assert not reply.ok
    assert (
        "`--for`: 4d3h (99h) is longer than workspace `demo` allows: at most 2d (48h)."
        in reply.text
    )


def test_without_rules_access_still_needs_a_lead(core: Core) -> None:
    reply = core.service.handle_text(
        "alice", "/aml access request cpu-cluster --for 1h --reason 'quick look'"
    )
    assert "is waiting for a team lead of `demo` (bob)" in reply.text
    assert "Policy:" not in reply.text


def test_gpu_card_shows_the_familys_quota_and_free_nodes(rules_core: Core) -> None:
    reply = rules_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 2h --reason 'fine-tune'"
    )
    card = rules_core.service.handle_text("dave", f"/aml request show {reply.request_id}")
    assert (
        "Capacity: standardNCSv3Family: 0 of 24 cores used, room for 4 more nodes of 6 "
        "cores; cluster gpu-cluster: 2 of 2 nodes free" in card.text
    )


def test_cpu_cards_carry_no_capacity_line(rules_core: Core) -> None:
    reply = rules_core.service.handle_text(
        "alice", "/aml access request cpu-cluster --for 6h --reason 'long one'"
    )
    card = rules_core.service.handle_text("bob", f"/aml request show {reply.request_id}")
    assert "Capacity:" not in card.text


def test_a_job_without_a_limit_is_estimated_per_hour(core: Core) -> None:
    reply = core.service.handle_text(
        "alice",
        f"/aml job submit --compute cpu-cluster --environment {ENV} --command 'python t.py'",
    )
    assert reply.ok, reply.text
    assert (
        "Est. cost: 1 node x $0.29/node-hour x 1h = $0.29 per hour it runs; the job has no "
        "time limit." in reply.text
    )


def test_policy_explain_judges_a_work_bound_request_for_its_time_limit() -> None:
    ws = load_config(RULES_CONFIG).workspaces["demo"]
    command = parse_command("/aml access request cpu-cluster --until-done --reason test")
    assert isinstance(command, AccessRequest)

    lines = explain_request(ws, "alice", command, History(spent=0.0)).splitlines()

    # As the service judges it: the work-bound time limit (2d), so `cpu-short` (at most 4h)
    # does not auto-approve it as it would the default 4h.
    assert "for 2d;" in lines[0]
    assert "  5. skip  cpu-short: 2d is longer than 4h" in lines
    assert lines[-1] == "Decision: no rule matches; the built-in policy decides."


def test_without_a_known_price_the_estimate_says_so_once(
    make_core: Callable[..., Core], database_url: str
) -> None:
    unpriced = make_core(parse_config(rules_config_in(UNPRICED_REGION)), database_url)
    reply = unpriced.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 2h --reason 'fine-tune'"
    )
    unknown = "unknown: no price is known for this VM size in this region (2 nodes x 2h)"
    assert f"Est. cost: {unknown}." in reply.text
    card = unpriced.service.handle_text("dave", f"/aml request show {reply.request_id}")
    assert f"Est. cost, whole grant: {unknown}\n" in card.text
    assert "unknown/node-hour" not in reply.text + card.text
