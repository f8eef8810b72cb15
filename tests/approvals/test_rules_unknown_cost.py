"""Rules on money when a price is unknown: an unknown is never counted as $0, never
auto-approved and never refused; it reaches people, and says why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from approvals.config import parse_config
from approvals.costs import Estimate
from approvals.payloads import JobPayload
from approvals.rule_models import Rule
from approvals.rules import RequestFacts, evaluate, explain, first_match
from approvals.tables import AuditRow, JobRow, RequestRow, RequestStatus
from bot.wiring import Core
from tests.paths import UNPRICED_REGION, rules_config_in
from workspaces.clock import ManualClock

CONFIG = """
people:
  alice: {slack_id: U0ALICE01}
  bob: {slack_id: U0BOB0001}
  dave: {slack_id: U0DAVE001}
groups:
  gpu-approvers: {members: [dave]}
workspaces:
  demo:
    azure: {subscription_id: 00000000-0000-4000-8000-000000000000,
            resource_group: rg, workspace_name: mlw}
    team_leads: [bob, dave]
    data_scientists: [alice]
    budget: {monthly_usd: 500}
    clusters:
      - {name: cpu-cluster, vm_sku: STANDARD_DS3_V2, nodes: 4, requires_grant: false}
      - {name: gpu-cluster, vm_sku: STANDARD_NC6s_v3, nodes: 2}
    policy:
      rules:
"""
OVER_BUDGET = "        - {name: over-budget, when: {over_budget: true}, decide: refuse}\n"
COSTLY = "        - {name: costly, when: {cost_above_usd: 100}, decide: two_leads}\n"
NEARLY = "        - {name: nearly, when: {budget_used_above: 0.8}, decide: two_leads}\n"
CHEAP_AUTO = "        - {name: cheap, when: {over_budget: false, gpu: false}, decide: auto}\n"
CPU_AUTO = "        - {name: cpu-short, when: {gpu: false, max_hours: 4}, decide: auto}\n"
GPU_GROUP = "        - {name: gpu, when: {gpu: true}, decide: lead, approvers: gpu-approvers}\n"
UNKNOWN = "est. cost unknown (no price is known for STANDARD_DS3_V2 in this region)"


def facts(
    rules: str,
    *,
    cluster: str = "cpu-cluster",
    node_hour: float | None = None,
    spent: float | None = 0.0,
) -> tuple[list[Rule], RequestFacts]:
    ws = parse_config(CONFIG + rules).workspaces["demo"]
    chosen = ws.cluster(cluster)
    assert chosen is not None
    hours = timedelta(hours=3)
    request = RequestFacts(
        action="job",
        requester="alice",
        is_lead=False,
        is_member=True,
        cluster=chosen,
        duration=hours,
        estimate=Estimate(chosen.nodes, node_hour, hours),
        spent=spent,
        budget=500.0,
    )
    return ws.policy.rules, request


def test_a_costly_rule_that_cannot_be_checked_stops_a_later_auto_approval() -> None:
    rules, request = facts(COSTLY + CPU_AUTO)

    outcome = first_match(rules, request)

    assert outcome is not None and outcome.unchecked
    assert outcome.rule.name == "costly" and outcome.decide == "two_leads"
    assert outcome.headline() == (
        f"needs two team leads: {UNKNOWN}, so it may be above $100.00 (policy rule `costly`)"
    )


def test_with_a_price_the_same_rules_auto_approve_a_cheap_job() -> None:
    rules, request = facts(COSTLY + CPU_AUTO, node_hour=0.293)

    outcome = first_match(rules, request)

    assert outcome is not None and not outcome.unchecked
    assert outcome.rule.name == "cpu-short" and outcome.decide == "auto"


def test_a_refusal_that_cannot_be_checked_asks_a_lead_instead() -> None:
    rules, request = facts(OVER_BUDGET)

    outcome = first_match(rules, request)

    assert outcome is not None and outcome.decide == "lead"
    assert outcome.headline() == (
        f"needs a team lead: {UNKNOWN}, so it may take the month over budget "
        "(policy rule `over-budget`, which would refuse it)"
    )


def test_a_month_already_over_budget_is_refused_whatever_the_request_costs() -> None:
    rules, request = facts(OVER_BUDGET, spent=520.0)

    outcome = first_match(rules, request)

    assert outcome is not None and not outcome.unchecked and outcome.decide == "refuse"
    assert outcome.reasons == ["over budget: $520.00 of the $500.00 monthly budget spent already"]


def test_a_budget_already_nearly_spent_needs_two_leads_whatever_the_request_costs() -> None:
    rules, request = facts(NEARLY + CPU_AUTO, spent=450.0)

    outcome = first_match(rules, request)

    assert outcome is not None and not outcome.unchecked and outcome.rule.name == "nearly"
    assert outcome.reasons == ["budget 90% used before this request (above 80%)"]


def test_an_auto_approval_that_depends_on_the_cost_is_passed_over() -> None:
    rules, request = facts(CHEAP_AUTO)

    assert first_match(rules, request) is None  # the built-in policy decides: a lead
    lines = explain(parse_config(CONFIG + CHEAP_AUTO).workspaces["demo"], request).splitlines()
    assert lines[1] == "Budget: $0.00 spent of $500.00 this month; with this request unknown"
    assert lines[2] == (
        f"  1. skip  cheap: {UNKNOWN}, so it may take the month over budget: not auto-approved "
        "without knowing"
    )


def test_a_later_rule_that_asks_people_is_not_loosened() -> None:
    # GPU: the costly rule may apply, but the group rule after it asks people already.
    rules, request = facts(COSTLY + GPU_GROUP, cluster="gpu-cluster")

    outcome = first_match(rules, request)

    assert outcome is not None and outcome.rule.name == "gpu" and not outcome.unchecked


def test_explain_shows_a_rule_that_may_apply_and_why() -> None:
    ws = parse_config(CONFIG + OVER_BUDGET + COSTLY + CPU_AUTO).workspaces["demo"]
    _, request = facts(OVER_BUDGET + COSTLY + CPU_AUTO)

    lines = explain(ws, request).splitlines()

    # Of the two that may apply, the one asking for more approvals decides.
    assert lines[2:] == [
        f"  1. MAYBE over-budget: {UNKNOWN}, so it may take the month over budget",
        f"  2. MAYBE costly: {UNKNOWN}, so it may be above $100.00",
        "  3. MATCH cpu-short: CPU cluster; 3h",
        f"Decision: needs two team leads: {UNKNOWN}, so it may be above $100.00 "
        "(policy rule `costly`)",
    ]


def test_without_a_budget_the_budget_rules_miss_and_say_so() -> None:
    rules, request = facts(NEARLY + OVER_BUDGET + CPU_AUTO)
    request = replace(request, budget=None)

    looked = evaluate(rules, request)
    outcome = first_match(rules, request)

    assert [(check.matched, check.unchecked, check.reasons) for check in looked[:2]] == [
        (False, False, ["no monthly budget is set"]),
        (False, False, ["no monthly budget is set"]),
    ]
    assert outcome is not None and outcome.rule.name == "cpu-short"


def test_an_unknown_months_spend_leaves_the_budget_rules_unchecked_too() -> None:
    rules, request = facts(NEARLY + CPU_AUTO, node_hour=0.293, spent=None)

    outcome = first_match(rules, request)

    assert outcome is not None and outcome.unchecked and outcome.rule.name == "nearly"
    assert outcome.reasons == ["this month's spend is unknown, so the budget may be above 80% used"]


UNCOUNTED = "this month's spend of $300.00 leaves out 2 jobs of unknown cost (on a compute or VM size without a known price)"


def test_a_spend_that_leaves_out_unpriced_jobs_is_a_floor_not_within_budget() -> None:
    # $300 + $3.52 of $500 looks within budget, but two jobs of unknown cost are not in it.
    rules, request = facts(OVER_BUDGET + CHEAP_AUTO, node_hour=0.293, spent=300.0)
    request = replace(request, uncounted_jobs=2)

    looked = evaluate(rules, request)
    outcome = first_match(rules, request)

    assert [check.reasons for check in looked] == [
        [f"{UNCOUNTED}, so the month may be over budget"],
        [f"{UNCOUNTED}, so the month may be over budget: not auto-approved without knowing"],
    ]
    assert outcome is not None and outcome.unchecked and outcome.decide == "lead"
    within = first_match(rules, replace(request, uncounted_jobs=0))
    assert within is not None and within.rule.name == "cheap"  # counted, it is within


def test_a_floor_already_above_the_line_decides_whatever_the_rest_cost() -> None:
    # At least $510 of $500: over budget, and 80% used, however much the left-out jobs cost.
    rules, request = facts(OVER_BUDGET, node_hour=0.293, spent=510.0)
    over = first_match(rules, replace(request, uncounted_jobs=3))
    rules, request = facts(NEARLY + CPU_AUTO, node_hour=0.293, spent=450.0)
    nearly = first_match(rules, replace(request, uncounted_jobs=3))

    assert over is not None and not over.unchecked and over.decide == "refuse"
    assert nearly is not None and not nearly.unchecked and nearly.rule.name == "nearly"


def test_a_floor_below_a_share_may_be_above_it() -> None:
    rules, request = facts(NEARLY + CPU_AUTO, node_hour=0.293, spent=300.0)

    outcome = first_match(rules, replace(request, uncounted_jobs=2))

    assert outcome is not None and outcome.unchecked and outcome.rule.name == "nearly"
    assert outcome.reasons == [f"{UNCOUNTED}, so the budget may be above 80% used"]


def test_explain_says_the_spend_is_at_least_and_what_it_leaves_out() -> None:
    ws = parse_config(CONFIG + CHEAP_AUTO).workspaces["demo"]
    _, request = facts(CHEAP_AUTO, node_hour=0.293, spent=300.0)

    lines = explain(ws, replace(request, uncounted_jobs=2)).splitlines()

    assert lines[1:3] == [
        "Budget: at least $300.00 spent of $500.00 this month; with this request at least $303.52",
        f"  ({UNCOUNTED})",
    ]


@pytest.fixture
def unpriced_core(make_core: Callable[..., Core], database_url: str) -> Core:
    """The rules example in a region neither the test prices nor the snapshot cover."""
    return make_core(parse_config(rules_config_in(UNPRICED_REGION)), database_url)


def test_a_cpu_job_of_unknown_price_is_not_auto_approved(unpriced_core: Core) -> None:
    reply = unpriced_core.service.handle_text(
        "alice",
        "/aml job submit --compute cpu-cluster --environment azureml:AzureML-sklearn-1.5@latest "
        "--command 'python t.py' --instances 4 --max-duration 3h",
    )

    assert reply.ok and reply.request_id is not None, reply.text
    assert "is waiting for two team leads of `demo` (bob, dave)" in reply.text
    assert (
        "Policy: needs two team leads: est. cost unknown (no price is known for STANDARD_DS3_V2 "
        "in this region), so it may be above $100.00 (policy rule `costly`)." in reply.text
    )
    with unpriced_core.store.transaction() as session:
        actors = [row.actor for row in session.query(AuditRow).all()]
    assert "policy" not in actors  # nothing was approved by a rule


UNPRICED_SIZE_CONFIG = """
people:
  alice: {slack_id: U0ALICE01}
  bob: {slack_id: U0BOB0001}
workspaces:
  demo:
    azure: {subscription_id: 00000000-0000-4000-8000-000000000000,
            resource_group: rg, workspace_name: mlw}
    region: westeurope
    team_leads: [bob]
    data_scientists: [alice]
    budget: {monthly_usd: 500}
    clusters:
      - {name: cpu-cluster, vm_sku: STANDARD_DS3_V2, nodes: 4, requires_grant: false}
      - {name: mem-cluster, vm_sku: Standard_E64s_v3, nodes: 8, requires_grant: false}
    policy:
      rules:
        - {name: over-budget, when: {over_budget: true}, decide: refuse}
        - {name: cheap, when: {over_budget: false, gpu: false}, decide: auto}
"""


def test_a_job_within_a_budget_that_leaves_out_unpriced_jobs_goes_to_a_lead(
    make_core: Callable[..., Core], database_url: str, clock: ManualClock
) -> None:
    # This month a 40-hour job ran on 8 nodes of a size nothing prices: the bot's $0.00 of
    # spend is only a floor, so "within budget" cannot be told and nothing is auto-approved.
    core = make_core(parse_config(UNPRICED_SIZE_CONFIG), database_url)
    job = (
        "/aml job submit --compute cpu-cluster --environment azureml:AzureML-sklearn-1.5@latest "
        "--command 'python t.py' --instances 1 --max-duration 1h"
    )
    before = core.service.handle_text("alice", job)
    assert before.ok and before.text.startswith("Auto-approved"), before.text
    now = clock.now()
    with core.store.transaction() as session:
        session.add(
            JobRow(
                workspace="demo",
                name="big-unpriced-run",
                requester="alice",
                compute="mem-cluster",
                status="Completed",
                submitted_at=now - timedelta(hours=40),
                updated_at=now,
                ended_at=now,
                following=False,
            )
        )

    reply = core.service.handle_text("alice", job)

    assert reply.ok and reply.request_id is not None, reply.text
    assert "is waiting for a team lead of `demo` (bob)" in reply.text
    assert (
        "leaves out 1 job of unknown cost (on a compute or VM size without a known price), so the "
        "month may be over budget" in (reply.text)
    )
    with core.store.transaction() as session:
        request = session.get(RequestRow, reply.request_id)
        assert request is not None and request.status == RequestStatus.PENDING.value
        assert isinstance(request.payload, JobPayload) and request.payload.budget_line
        assert request.payload.budget_line == (
            "at least $0.00 of $500.00 this month (at least 0%), leaving out 1 job of unknown "
            "cost; this request adds up to $0.29"
        )
