"""Ordered risk rules: the first rule whose conditions all hold decides a request. Pure.

`evaluate` returns every rule looked at with the reason it matched or did not, so
`amlbot policy explain` and `check-config` show exactly what the bot would do and why.

A condition on money (`cost_above_usd`, `budget_used_above`, `over_budget`) cannot be
checked when the VM size has no known price (or the month's spend is unknown, or leaves
out jobs on sizes without a price, so that it is only a lower bound), and an unknown is
never counted as $0. A rule that would auto-approve is then passed over; one
that would ask for approval or refuse *may apply*: the walk goes on, and if it ends in an
auto-approval (or no rule at all), the rule that may apply asking for the most approvals
decides instead, a refusal asking one lead. So an unknown cost is never auto-approved and
never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from approvals.config import ClusterConfig, WorkspaceConfig
from approvals.costs import Estimate, is_gpu, money
from approvals.rule_models import Rule, RuleAction, RuleDecision, RuleWhen
from commands.durations import format_duration
from shared.wording import counted


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
    # Jobs of this month that `spent` leaves out (no price known for their VM size): then
    # it is only a lower bound, and "not above" cannot be told.
    uncounted_jobs: int = 0
    # How long ago the requester last had this same access granted; None: never.
    last_grant_age: timedelta | None = None

    @property
    def spent_with_request(self) -> float | None:
        """The month's spend with this request; None when either is unknown."""
        if self.spent is None or self.estimate.total is None:
            return None
        return self.spent + self.estimate.total


@dataclass(frozen=True)
class RuleCheck:
    rule: Rule
    matched: bool
    # Matched: each condition as it held ("GPU cluster", "2h"); else the first that failed;
    # unchecked: those that held, then those that could not be checked.
    reasons: list[str]
    # Not matched, but it may apply: no condition failed and some could not be checked.
    unchecked: bool = False


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    reasons: list[str]
    unchecked: bool = False

    @property
    def decide(self) -> RuleDecision:
        """What the rule decides: as written, but a rule that could not be checked never
        refuses; it asks a team lead instead (who sees that the cost is unknown)."""
        if self.unchecked and self.rule.decide == "refuse":
            return "lead"
        return self.rule.decide

    @property
    def why(self) -> str:
        if self.unchecked:  # the rule's own words say why it applies; it may not
            return ", ".join(self.reasons)
        return self.rule.why or (", ".join(self.reasons) or "every request")

    def headline(self) -> str:
        """`auto-approved: CPU cluster, 2h, within policy rule `cpu-short``."""
        name = f"policy rule `{self.rule.name}`"
        if self.unchecked and self.rule.decide == "refuse":
            name += ", which would refuse it"
        if self.decide == "auto":
            return f"auto-approved: {self.why}, within {name}"
        if self.decide == "refuse":
            return f"refused: {self.why} ({name})"
        who = (
            f"group `{self.rule.approvers}`"
            if self.rule.approvers
            else ("two team leads" if self.decide == "two_leads" else "a team lead")
        )
        if self.rule.approvers and self.decide == "two_leads":
            who = f"two members of group `{self.rule.approvers}`"
        return f"needs {who}: {self.why} ({name})"


# A condition as checked: True or False, or None when it cannot be told (a price is
# unknown); then the text it is shown with: as it held, and as it failed or is unknown.
Condition = tuple[bool | None, str, str]


def _check(when: RuleWhen, facts: RequestFacts) -> tuple[bool | None, list[str]]:
    """(all hold, the reasons): on a miss, the reasons are the one condition that failed;
    None when none failed but some could not be checked, with those listed last."""
    held: list[str] = []
    cluster = facts.cluster
    hours = facts.duration.total_seconds() / 3600
    checks: list[Condition] = []
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
        checks.append(_cost_above(when.cost_above_usd, facts))
    if when.budget_used_above is not None:
        checks.append(_budget_used_above(when.budget_used_above, facts))
    if when.over_budget is not None:
        checks.append(_over_budget(when.over_budget, facts))
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
    unknown: list[str] = []
    for holds, yes, no in checks:
        if holds is False:
            return False, [no]
        if holds is None:
            unknown.append(no)
        else:
            held.append(yes)
    return (None, held + unknown) if unknown else (True, held)


def _unknown_cost(facts: RequestFacts) -> str:
    return f"est. cost unknown (no price is known for {facts.cluster.vm_sku} in this region)"


def _cost_above(limit: float, facts: RequestFacts) -> Condition:
    total = facts.estimate.total
    if total is None:
        return None, "", f"{_unknown_cost(facts)}, so it may be above {money(limit)}"
    return (
        total > limit,
        f"est. {money(total)} is above {money(limit)}",
        f"est. {money(total)} is not above {money(limit)}",
    )


def _budget_shares(facts: RequestFacts) -> tuple[float | None, float | None]:
    """The month's share of the budget spent without this request and with it; None where
    unknown. Only called with a budget."""
    assert facts.budget is not None
    before = None if facts.spent is None else facts.spent / facts.budget
    with_request = facts.spent_with_request
    return before, (None if with_request is None else with_request / facts.budget)


def _uncounted(facts: RequestFacts) -> str:
    return (
        f"this month's spend of {money(facts.spent)} leaves out "
        f"{counted(facts.uncounted_jobs, 'job')} of unknown cost "
        "(on a compute or VM size without a known price)"
    )


def _budget_used_above(share: float, facts: RequestFacts) -> Condition:
    if facts.budget is None:
        return False, "", "no monthly budget is set"
    before, with_request = _budget_shares(facts)
    if with_request is not None:
        used = f"budget {with_request:.0%} used with this request"
        if with_request <= share and facts.uncounted_jobs:  # a lower bound: may be above
            return None, "", f"{_uncounted(facts)}, so the budget may be above {share:.0%} used"
        return (
            with_request > share,
            f"{used} (above {share:.0%})",
            f"{used} (not above {share:.0%})",
        )
    if before is not None and before > share:  # above already, whatever this one costs
        return True, f"budget {before:.0%} used before this request (above {share:.0%})", ""
    if before is None:
        unknown = "this month's spend is unknown"
        return None, "", f"{unknown}, so the budget may be above {share:.0%} used"
    return None, "", f"{_unknown_cost(facts)}, so it may take the budget above {share:.0%} used"


def _over_budget(over_wanted: bool, facts: RequestFacts) -> Condition:
    if facts.budget is None:
        return not over_wanted, "no monthly budget is set", "no monthly budget is set"
    before, with_request = _budget_shares(facts)
    if with_request is not None:
        text = (
            f"{money(facts.spent_with_request)} of the {money(facts.budget)} monthly budget "
            f"with this request"
        )
        over = with_request > 1
        if not over and facts.uncounted_jobs:  # a lower bound: the month may be over
            return None, "", f"{_uncounted(facts)}, so the month may be over budget"
        return over == over_wanted, f"over budget: {text}", f"within budget: {text}"
    if before is not None and before > 1:  # over already, whatever this one costs
        text = f"{money(facts.spent)} of the {money(facts.budget)} monthly budget spent already"
        return over_wanted, f"over budget: {text}", f"over budget: {text}"
    if before is None:
        return None, "", "this month's spend is unknown, so it may be over budget"
    return None, "", f"{_unknown_cost(facts)}, so it may take the month over budget"


def evaluate(rules: list[Rule], facts: RequestFacts) -> list[RuleCheck]:
    """Each rule in order up to and including the first that matches. One that could not
    be checked either misses (it would auto-approve) or may apply (`RuleCheck.unchecked`),
    and the walk goes on."""
    looked: list[RuleCheck] = []
    for rule in rules:
        verdict, reasons = _check(rule.when, facts)
        if verdict is None and rule.decide == "auto":
            unknown = reasons[-1]
            looked.append(RuleCheck(rule, False, [f"{unknown}: not auto-approved without knowing"]))
            continue
        looked.append(RuleCheck(rule, verdict is True, reasons, unchecked=verdict is None))
        if verdict is True:
            break
    return looked


def outcome_of(looked: list[RuleCheck]) -> RuleOutcome | None:
    """What decides, from the rules `evaluate` looked at: the rule that matched, unless it
    auto-approves (or none matched) while earlier rules may apply: then the one of those
    that asks for the most approvals does (the first of equals)."""
    matched = looked[-1] if looked and looked[-1].matched else None
    maybe = [
        RuleOutcome(check.rule, check.reasons, unchecked=True)
        for check in looked
        if check.unchecked
    ]
    if maybe and (matched is None or matched.rule.decide == "auto"):
        return max(maybe, key=lambda outcome: 2 if outcome.decide == "two_leads" else 1)
    if matched is not None:
        return RuleOutcome(matched.rule, matched.reasons)
    return None


def first_match(rules: list[Rule], facts: RequestFacts) -> RuleOutcome | None:
    return outcome_of(evaluate(rules, facts))


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
        at_least = "at least " if facts.uncounted_jobs else ""
        lines.append(
            f"Budget: {at_least}{money(facts.spent)} spent of {money(facts.budget)} this "
            f"month; with this request {at_least}{money(facts.spent_with_request)}"
        )
        if facts.uncounted_jobs:
            lines.append(f"  ({_uncounted(facts)})")
    if not ws.policy.rules:
        lines.append(f"Workspace `{ws.name}` has no rules: the built-in policy decides.")
        return "\n".join(lines)
    looked = evaluate(ws.policy.rules, facts)
    for index, check in enumerate(looked, start=1):
        mark = "MATCH" if check.matched else ("MAYBE" if check.unchecked else "skip ")
        lines.append(f"  {index}. {mark} {check.rule.name}: {'; '.join(check.reasons)}")
    outcome = outcome_of(looked)
    if outcome is not None:
        lines.append("Decision: " + outcome.headline())
    else:
        lines.append("Decision: no rule matches; the built-in policy decides.")
    return "\n".join(lines)
