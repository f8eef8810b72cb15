"""The configuration of risk rules, approver groups and budgets (validated, no logic).

A rule reads like a sentence: *when* a request matches every condition given, *decide*
it so (`auto`, `lead`, `two_leads` or `refuse`), with `approvers` from a named group.
Errors name the rule and the key, e.g. `policy.rules[2] (gpu).when.max_hours: must be a
positive number, e.g. 4`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from approvals.strict_models import StrictModel
from commands.durations import parse_duration

RuleAction = Literal["access", "job"]
RuleDecision = Literal["auto", "lead", "two_leads", "refuse"]
Requester = Literal["member", "data_scientist", "lead"]


def _positive_number(value: Any, example: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"must be a positive number, e.g. {example}")
    return value


class RuleWhen(StrictModel):
    """Every condition given must hold; a rule with none matches every request."""

    # Which requests: access grants, jobs (default: both).
    actions: list[RuleAction] | None = None
    # `gpu: true` for N-series (GPU) clusters, `false` for CPU clusters.
    gpu: bool | None = None
    clusters: list[str] | None = None
    # The cluster's VM size is (or is not) one of these.
    vm_skus: list[str] | None = None
    vm_skus_not_in: list[str] | None = None
    # How long: a grant's `--for`, a job's `--max-duration` (or the policy's default).
    max_hours: float | None = None
    # Who asks: any member of the workspace, a data scientist, or a lead.
    requester: Requester | None = None
    # The request's estimated cost in USD is above this.
    cost_above_usd: float | None = None
    # Spend this month (with this request) is above this fraction of the budget (0.8: 80%).
    budget_used_above: float | None = None
    # `true`: spend this month plus this request goes over the budget.
    over_budget: bool | None = None
    # The requester had the same access granted (and not refused) within this time.
    regrant_within: timedelta | None = None

    @field_validator("max_hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> Any:
        return _positive_number(value, "4")

    @field_validator("cost_above_usd", mode="before")
    @classmethod
    def _cost(cls, value: Any) -> Any:
        return _positive_number(value, "100")

    @field_validator("budget_used_above", mode="before")
    @classmethod
    def _fraction(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise ValueError("must be a fraction of the budget above 0 and at most 1, e.g. 0.8")
        return value

    @field_validator("regrant_within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError:
                raise ValueError("must be a duration, e.g. 7d") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        return value

    @field_validator("clusters", "vm_skus", "vm_skus_not_in", "actions", mode="before")
    @classmethod
    def _non_empty_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and not value:
            raise ValueError("must list at least one value, or be left out")
        return value


class Rule(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    when: RuleWhen = RuleWhen()
    decide: RuleDecision
    # A group under `groups:` whose members approve instead of the workspace's leads.
    approvers: str | None = None
    # Said to the requester and on the card; default: the conditions that matched.
    why: str | None = Field(default=None, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _decide_spelled(cls, data: Any) -> Any:
        if isinstance(data, dict) and "decide" not in data:
            raise ValueError(
                "needs `decide:` (one of auto, lead, two_leads, refuse), e.g. decide: lead"
            )
        return data

    @field_validator("decide", mode="before")
    @classmethod
    def _known_decision(cls, value: Any) -> Any:
        if value not in ("auto", "lead", "two_leads", "refuse"):
            raise ValueError(
                f"'{value}' is not a decision: use auto, lead, two_leads or refuse, e.g. "
                "decide: lead"
            )
        return value

    @model_validator(mode="after")
    def _approvers_only_for_leads(self) -> Rule:
        if self.approvers is not None and self.decide in ("auto", "refuse"):
            raise ValueError(
                f"`approvers:` only applies to decide: lead or two_leads, not {self.decide}"
            )
        return self


class ApproverGroup(StrictModel):
    """People (keys of `people:`, Slack user ids or e-mails) and/or a Slack user group."""

    members: list[str] = Field(default_factory=list)
    # A Slack user group id (S...), resolved through `usergroups.users.list`.
    slack_usergroup: str | None = Field(default=None, pattern=r"^S[A-Z0-9]{2,20}$")

    @model_validator(mode="after")
    def _someone(self) -> ApproverGroup:
        if not self.members and self.slack_usergroup is None:
            raise ValueError("a group needs `members:` or `slack_usergroup:`, e.g. members: [bob]")
        return self


class Budget(StrictModel):
    monthly_usd: float
    # Where the month's spend comes from: the bot's records of the jobs it ran (`bot`), or
    # Azure Cost Management's actual cost of the workspace (`cost_management`, Azure only;
    # the bot's records stand in while it cannot be reached).
    spend_from: Literal["bot", "cost_management"] = "bot"

    @field_validator("monthly_usd", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Any:
        return _positive_number(value, "2000")
