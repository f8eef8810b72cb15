"""What a request risks and costs, gathered for the rules and shown on its card.

The handlers of `service.py` call `assess_access` / `assess_job` before deciding: they read the
month's spend and the requester's last grant (`History`), build the request's facts with the
estimated cost (`access_facts` / `job_facts`, the one place facts are made) and let the
workspace's rules decide. `explain_request` shows the same for `amlbot policy explain`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from approvals.capacity import capacity_line
from approvals.config import ClusterConfig, WorkspaceConfig
from approvals.costs import Estimate, grant_estimate, is_gpu, job_estimate
from approvals.payloads import Assessed, CostEstimate, RuleFacts
from approvals.policy import (
    Decision,
    asked_access_duration,
    job_limit,
    needs_approvers,
    require_cluster,
)
from approvals.rule_models import RuleAction
from approvals.rules import RequestFacts, RuleOutcome, explain, first_match
from approvals.service_base import ServiceBase
from approvals.spend import budget_line, month_to_date
from approvals.tables import GrantRow
from commands import models as m
from shared.errors import PermissionRefusedError, WorkspaceError

log = logging.getLogger(__name__)

BILLED_CACHE = timedelta(minutes=10)


@dataclass(frozen=True)
class Assessment:
    facts: RequestFacts
    outcome: RuleOutcome | None
    # GPU requests: the family's quota and the cluster's free nodes (capacity.py).
    capacity: str | None = None
    # Where `facts.spent` came from, when not the bot's own records.
    spend_source: str | None = None
    # A job without a time limit: its estimate is for one hour.
    open_ended: bool = False

    def estimate_text(self) -> str:
        text = self.facts.estimate.explain()
        return f"{text} per hour it runs; the job has no time limit" if self.open_ended else text

    def kept_facts(self, ws: WorkspaceConfig) -> Assessed:
        """Kept with the request, so its card shows what the decision was based on."""
        estimate = self.facts.estimate
        budget = None
        if self.facts.spent is not None:
            spent, uncounted = self.facts.spent, self.facts.uncounted_jobs
            budget = budget_line(ws, spent, estimate.total, uncounted) + (
                f" (spend from {self.spend_source})" if self.spend_source else ""
            )
        rule = None
        if self.outcome is not None:
            rule = RuleFacts(
                name=self.outcome.rule.name,
                decide=self.outcome.decide,
                headline=self.outcome.headline(),
                approvers=self.outcome.rule.approvers,
            )
        return Assessed(
            estimate=CostEstimate(
                usd=estimate.total, explain=self.estimate_text(), source=estimate.source
            ),
            rule=rule,
            budget_line=budget,
            capacity=self.capacity,
        )


@dataclass(frozen=True)
class History:
    """What the rules read of the past, found by whoever asks: the service in its records (or
    Azure Cost Management), `amlbot policy explain` in its options."""

    # Month-to-date spend without this request; None when unknown.
    spent: float | None = None
    # How long ago the requester last had this same access granted; None: never.
    last_grant_age: timedelta | None = None
    # Where `spent` came from, when not the bot's own records.
    spend_source: str | None = None
    # Jobs `spent` leaves out for want of a price: then it is a lower bound.
    uncounted_jobs: int = 0


# Without a limit a job's cost is unknown; an hour shows its rate.
OPEN_ENDED_JOB_ESTIMATE = timedelta(hours=1)


def access_facts(
    ws: WorkspaceConfig, person: str, cluster: ClusterConfig, duration: timedelta, past: History
) -> RequestFacts:
    return _request_facts(
        ws, person, "access", cluster, duration, grant_estimate(cluster, duration, ws.region), past
    )


def job_facts(
    ws: WorkspaceConfig,
    person: str,
    cluster: ClusterConfig,
    instances: int,
    limit: timedelta | None,
    past: History,
) -> RequestFacts:
    """`limit` None: an open-ended job, estimated (and judged by the rules) for one hour."""
    expected = limit or OPEN_ENDED_JOB_ESTIMATE
    estimate = job_estimate(cluster, instances, expected, ws.region)
    return _request_facts(ws, person, "job", cluster, expected, estimate, past)


def _request_facts(
    ws: WorkspaceConfig,
    person: str,
    action: RuleAction,
    cluster: ClusterConfig,
    duration: timedelta,
    estimate: Estimate,
    past: History,
) -> RequestFacts:
    return RequestFacts(
        action=action,
        requester=person,
        is_lead=person in ws.team_leads,
        is_member=person in ws.members,
        cluster=cluster,
        duration=duration,
        estimate=estimate,
        spent=past.spent,
        budget=ws.budget.monthly_usd if ws.budget else None,
        uncounted_jobs=past.uncounted_jobs,
        last_grant_age=past.last_grant_age,
    )


def explain_request(
    ws: WorkspaceConfig, person: str, command: m.AccessRequest | m.JobSubmit, past: History
) -> str:
    """Which rule would decide this request and why, on the same facts the service would
    build (`amlbot policy explain`); asks nothing of the store or Azure."""
    if isinstance(command, m.AccessRequest):
        cluster = require_cluster(ws, command.cluster)
        duration = asked_access_duration(ws, cluster, command)
        return explain(ws, access_facts(ws, person, cluster, duration, past))
    cluster = require_cluster(ws, command.compute)
    limit = job_limit(ws, command.max_duration)
    text = explain(ws, job_facts(ws, person, cluster, command.instances, limit, past))
    if limit is None:
        return "No --max-duration and no policy default: estimated for one hour.\n" + text
    return text


class RiskCommands(ServiceBase):
    # Workspace -> (when asked, USD): Azure Cost Management's answers, briefly kept.
    _billed: dict[str, tuple[datetime, float]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._billed = {}

    def history(self, ws: WorkspaceConfig, person: str, cluster: ClusterConfig) -> History:
        """The month's spend (Azure's figure when the budget asks for it, else the bot's
        records) and the requester's last grant of this cluster."""
        now = self.clock.now()
        billed = self.billed_this_month(ws)
        with self.store.transaction() as session:
            # Azure's bill counts every job; the bot's records leave out unpriced sizes.
            records = (
                None if billed is not None else month_to_date(session, ws, now, self.idle_spend)
            )
            last_grant = session.scalar(
                select(func.max(GrantRow.granted_at)).where(
                    GrantRow.grantee == person,
                    GrantRow.workspace == ws.name,
                    GrantRow.cluster == cluster.name,
                )
            )
        return History(
            spent=records.total if records is not None else billed,
            last_grant_age=(now - last_grant) if last_grant is not None else None,
            spend_source="Azure Cost Management" if billed is not None else None,
            uncounted_jobs=records.unpriced_jobs if records is not None else 0,
        )

    def assessment(self, ws: WorkspaceConfig, facts: RequestFacts, past: History) -> Assessment:
        """The rule that decides, and for GPU clusters the capacity shown on the card."""
        cluster = facts.cluster
        capacity = self.capacity_of(ws, cluster, facts.estimate.nodes) if is_gpu(cluster) else None
        return Assessment(facts, first_match(ws.policy.rules, facts), capacity, past.spend_source)

    def billed_this_month(self, ws: WorkspaceConfig) -> float | None:
        """Azure Cost Management's figure for a budget that asks for it, kept a few minutes
        (the API allows few calls); None: count the bot's own records instead."""
        if ws.budget is None or ws.budget.spend_from != "cost_management":
            return None
        now = self.clock.now()
        cached = self._billed.get(ws.name)
        if cached is not None and now - cached[0] < BILLED_CACHE:
            return cached[1]
        try:
            answer = self.backend_for(ws.name).month_to_date_cost()
        except WorkspaceError as exc:
            log.warning("cost of %s unavailable, counting the bot's records: %s", ws.name, exc)
            return None
        if answer is None:
            return None
        self._billed[ws.name] = (now, answer.amount)
        return answer.amount

    def capacity_of(self, ws: WorkspaceConfig, cluster: ClusterConfig, nodes: int) -> str:
        """Asked of the workspace at request time; a failure leaves the card without it."""
        backend = self.backend_for(ws.name)
        try:
            quota = backend.vm_quota(cluster.vm_sku)
            info = next(
                (c for c in backend.list_computes().clusters if c.name == cluster.name), None
            )
        except WorkspaceError as exc:
            return f"unknown: {exc.render()}"
        return capacity_line(quota, info, nodes)

    def assess_access(
        self, ws: WorkspaceConfig, person: str, cluster: ClusterConfig, duration: timedelta
    ) -> Assessment:
        past = self.history(ws, person, cluster)
        return self.assessment(ws, access_facts(ws, person, cluster, duration, past), past)

    def assess_job(
        self,
        ws: WorkspaceConfig,
        person: str,
        cluster: ClusterConfig,
        instances: int,
        duration: timedelta | None,
    ) -> Assessment:
        past = self.history(ws, person, cluster)
        facts = job_facts(ws, person, cluster, instances, duration, past)
        return replace(self.assessment(ws, facts, past), open_ended=duration is None)

    def rule_decision(self, ws: WorkspaceConfig, person: str, outcome: RuleOutcome) -> Decision:
        """What the matching rule decides; a refusal is raised with the rule that refused."""
        rule = outcome.rule
        if outcome.decide == "refuse":
            raise PermissionRefusedError(
                f"Not submitted: policy rule `{rule.name}` refuses it: {outcome.why}. Ask a "
                f"team lead of `{ws.name}` if you think the rule should not apply."
            )
        if outcome.decide == "auto":
            return Decision(run_now=True, why=outcome.headline(), rule=outcome.rule.name)
        needed = 2 if outcome.decide == "two_leads" else 1
        return needs_approvers(
            ws, person, needed, outcome.headline(), rule.approvers, self.directory
        )
