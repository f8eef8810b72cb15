"""Ordered risk rules: the first rule whose conditions all hold decides a request. Pure.

`evaluate` returns every rule looked at with the reason it matched or did not, so
`amlbot policy explain` and `check-config` show exactly what the bot would do and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from approvals.config import ClusterConfig, WorkspaceConfig
from approvals.costs import Estimate, is_gpu, money
from approvals.rule_models import Rule, RuleAction, RuleWhen
from commands.durations import format_duration


@dataclass(frozen=True)
class RequestFacts:
    """What the rules may look at, gathered by the service before deciding."""

    action: RuleAction
    requester: str
    is_lead: bool
    is_member: bool
    cluster: ClusterConfig
    duration: timedelta
    estimate: Estimate
    # Month-to-date spend without this request; None when unknown.
    spent: float | None = None
    budget: float | None = None
    # How long ago the requester last had this same access granted; None: never.
    last_grant_age: timedelta | None = None

    @property
    def spent_with_request(self) -> float | None:
        if self.spent is None:
            return None
        return self.spent + (self.estimate.total or 0.0)


@dataclass(frozen=True)
class RuleCheck:
    rule: Rule
    matched: bool
    # Matched: each condition as it held ("GPU cluster", "2h"); else the first that failed.
    reasons: list[str]


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    reasons: list[str]

    @property
    def why(self) -> str:
        return self.rule.why or (", ".join(self.reasons) or "every request")

    def headline(self) -> str:
        """`auto-approved: CPU cluster, 2h, within policy rule `cpu-short``."""
        name = f"policy rule `{self.rule.name}`"
        if self.rule.decide == "auto":
            return f"auto-approved: {self.why}, within {name}"
        if self.rule.decide == "refuse":
            return f"refused: {self.why} ({name})"
        who = (
            f"group `{self.rule.approvers}`"
            if self.rule.approvers
            else ("two team leads" if self.rule.decide == "two_leads" else "a team lead")
        )
        if self.rule.approvers and self.rule.decide == "two_leads":
            who = f"two members of group `{self.rule.approvers}`"
        return f"needs {who}: {self.why} ({name})"


def _check(when: RuleWhen, facts: RequestFacts) -> tuple[bool, list[str]]:
    """(all hold, the reasons): on a miss, the reasons are the one condition that failed."""
    held: list[str] = []
    cluster = facts.cluster
    hours = facts.duration.total_seconds() / 3600
    checks: list[tuple[bool, str, str]] = []
    if when.actions is not None:
        word = "access request" if facts.action == "access" else "job"
        checks.append(
            (facts.action in when.actions, word, f"a {word}, not {' or '.join(when.actions)}")
        )
    if when.gpu is not None:
        gpu = is_gpu(cluster)
        kind = "GPU cluster" if gpu else "CPU cluster"
        checks.append((gpu == when.gpu, kind, f"{cluster.name} is a {kind}"))
    if when.clusters is not None:
        checks.append(
            (
                cluster.name in when.clusters,
                f"cluster {cluster.name}",
                f"cluster {cluster.name} is not one of {', '.join(when.clusters)}",
            )
        )
    if when.vm_skus is not None:
        listed = cluster.vm_sku.upper() in {s.upper() for s in when.vm_skus}
        checks.append(
            (listed, f"VM size {cluster.vm_sku}", f"VM size {cluster.vm_sku} is not listed")
        )
    if when.vm_skus_not_in is not None:
        allowed = cluster.vm_sku.upper() in {s.upper() for s in when.vm_skus_not_in}
        checks.append(
            (
                not allowed,
                f"VM size {cluster.vm_sku} is not allowed "
                f"(allowed: {', '.join(when.vm_skus_not_in)})",
                f"VM size {cluster.vm_sku} is allowed",
            )
        )
    if when.max_hours is not None:
        checks.append(
            (
                hours <= when.max_hours,
                format_duration(facts.duration),
                f"{format_duration(facts.duration)} is longer than {when.max_hours:g}h",
            )
        )
    if when.requester is not None:
        if when.requester == "lead":
            ok, yes, no = facts.is_lead, "asked by a team lead", "not asked by a team lead"
        elif when.requester == "data_scientist":
            ok = facts.is_member and not facts.is_lead
            yes, no = "asked by a data scientist", "not asked by a data scientist"
        else:
            ok, yes, no = facts.is_member, "asked by a member", "not asked by a member"
        checks.append((ok, yes, no))
    if when.cost_above_usd is not None:
        total = facts.estimate.total
        checks.append(
            (
                total is not None and total > when.cost_above_usd,
                f"est. {money(total)} is above {money(when.cost_above_usd)}",
                f"est. {money(total)} is not above {money(when.cost_above_usd)}",
            )
        )
    if when.budget_used_above is not None:
        share = _share(facts)
        checks.append(
            (
                share is not None and share > when.budget_used_above,
                f"budget {_percent(share)} used with this request "
                f"(above {when.budget_used_above:.0%})",
                f"budget {_percent(share)} used with this request "
                f"(not above {when.budget_used_above:.0%})",
            )
        )
    if when.over_budget is not None:
        share = _share(facts)
        over = share is not None and share > 1
        text = (
            f"{money(facts.spent_with_request)} of the {money(facts.budget)} monthly budget "
            f"with this request"
        )
        checks.append((over == when.over_budget, f"over budget: {text}", f"within budget: {text}"))
    if when.regrant_within is not None:
        age = facts.last_grant_age
        recent = facts.action == "access" and age is not None and age <= when.regrant_within
        checks.append(
            (
                recent,
                f"same access granted {format_duration(age or timedelta(0))} ago",
                f"no grant of {cluster.name} in the last {format_duration(when.regrant_within)}",
            )
        )
    for ok, yes, no in checks:
        if not ok:
            return False, [no]
        held.append(yes)
    return True, held


def _share(facts: RequestFacts) -> float | None:
    spent = facts.spent_with_request
    if spent is None or facts.budget is None:
        return None
    return spent / facts.budget


def _percent(share: float | None) -> str:
    return "unknown" if share is None else f"{share:.0%}"


def evaluate(rules: list[Rule], facts: RequestFacts) -> list[RuleCheck]:
    """Each rule in order up to and including the first that matches."""
    looked: list[RuleCheck] = []
    for rule in rules:
        matched, reasons = _check(rule.when, facts)
        looked.append(RuleCheck(rule, matched, reasons))
        if matched:
            break
    return looked


def first_match(rules: list[Rule], facts: RequestFacts) -> RuleOutcome | None:
    looked = evaluate(rules, facts)
    if looked and looked[-1].matched:
        return RuleOutcome(looked[-1].rule, looked[-1].reasons)
    return None


def describe_rule(rule: Rule) -> str:
    """One line for `check-config`: `cpu-short: CPU cluster, at most 4h -> auto-approve`."""
    w = rule.when
    parts: list[str] = []
    if w.actions:
        parts.append(" or ".join(w.actions))
    if w.gpu is not None:
        parts.append("GPU cluster" if w.gpu else "CPU cluster")
    if w.clusters:
        parts.append(f"cluster in {', '.join(w.clusters)}")
    if w.vm_skus:
        parts.append(f"VM size in {', '.join(w.vm_skus)}")
    if w.vm_skus_not_in:
        parts.append(f"VM size not in {', '.join(w.vm_skus_not_in)}")
    if w.max_hours is not None:
        parts.append(f"at most {w.max_hours:g}h")
    if w.requester:
        parts.append(f"asked by a {w.requester.replace('_', ' ')}")
    if w.cost_above_usd is not None:
        parts.append(f"est. cost above {money(w.cost_above_usd)}")
    if w.budget_used_above is not None:
        parts.append(f"budget more than {w.budget_used_above:.0%} used")
    if w.over_budget is not None:
        parts.append("over budget" if w.over_budget else "within budget")
    if w.regrant_within is not None:
        parts.append(f"same access granted within {format_duration(w.regrant_within)}")
    verdict = {
        "auto": "auto-approve",
        "lead": "one approval",
        "two_leads": "two distinct approvals",
        "refuse": "refuse",
    }[rule.decide]
    by = f" from group `{rule.approvers}`" if rule.approvers else ""
    if rule.decide in ("lead", "two_leads") and not rule.approvers:
        by = " from the workspace's team leads"
    return f"{rule.name}: {', '.join(parts) or 'any request'} -> {verdict}{by}"


def explain(ws: WorkspaceConfig, facts: RequestFacts) -> str:
    lines = [
        f"Request: {facts.action} on `{facts.cluster.name}` ({facts.cluster.vm_sku}) by "
        f"{facts.requester} for {format_duration(facts.duration)}; est. {facts.estimate.explain()}"
    ]
    if facts.budget is not None:
        lines.append(
            f"Budget: {money(facts.spent)} spent of {money(facts.budget)} this month; "
            f"with this request {money(facts.spent_with_request)}"
        )
    if not ws.policy.rules:
        lines.append(f"Workspace `{ws.name}` has no rules: the built-in policy decides.")
        return "\n".join(lines)
    looked = evaluate(ws.policy.rules, facts)
    for index, check in enumerate(looked, start=1):
        mark = "MATCH" if check.matched else "skip "
        lines.append(f"  {index}. {mark} {check.rule.name}: {'; '.join(check.reasons)}")
    if looked and looked[-1].matched:
        lines.append("Decision: " + RuleOutcome(looked[-1].rule, looked[-1].reasons).headline())
    else:
        lines.append("Decision: no rule matches; the built-in policy decides.")
    return "\n".join(lines)
