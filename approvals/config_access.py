"""Policy for access that ends with the work and stays true: grants tied to jobs, escalation
of requests nobody decides, break-glass, and the nightly drift check.

Kept apart from the approval rules in `approvals/policy.py` and the core policy in
`approvals/config_policy.py`; each model is one key under a workspace's `policy:`
(`until_done`, `escalation`, `break_glass`, `drift`).
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

from pydantic import Field, field_validator, model_validator

from approvals.strict_models import StrictModel, coerce_duration


class UntilDonePolicy(StrictModel):
    """`policy.until_done`: grants that end when the holder's work on the cluster ends."""

    # After the holder's last job on the cluster ended, how long nothing of theirs may run
    # there before the grant ends.
    idle_period: timedelta = timedelta(minutes=30)
    # The time limit of such a grant when the request names none (`--for`); at most
    # `policy.access.max_duration` (checked where both are known). None: that maximum.
    time_limit: timedelta | None = None

    _durations = field_validator("idle_period", "time_limit", mode="before")(coerce_duration)

    @model_validator(mode="after")
    def _positive(self) -> UntilDonePolicy:
        if self.idle_period <= timedelta(0):
            raise ValueError("idle_period must be longer than 0, e.g. 30m")
        if self.time_limit is not None and self.time_limit <= timedelta(0):
            raise ValueError("time_limit must be longer than 0, e.g. 24h")
        return self


class EscalationPolicy(StrictModel):
    """`policy.escalation`: a pending request reminds its approvers, then goes to fallbacks."""

    # First reminder to the approvers who have not decided, this long after the request
    # was opened (None: only the reminder before expiry, `policy.remind_before_expiry`).
    remind_after: timedelta | None = None
    # Escalate to `fallback_approvers` this long after the request was opened (None: never).
    escalate_after: timedelta | None = None
    # People (keys of `people`, Slack user ids or e-mails) who may decide an escalated
    # request besides the workspace's team leads.
    fallback_approvers: list[str] = Field(default_factory=list)

    _durations = field_validator("remind_after", "escalate_after", mode="before")(coerce_duration)

    @model_validator(mode="after")
    def _fallbacks_when_escalating(self) -> EscalationPolicy:
        if self.escalate_after is not None and not self.fallback_approvers:
            raise ValueError(
                "escalate_after needs fallback_approvers to escalate to, e.g. "
                "fallback_approvers: [dana]"
            )
        return self


class BreakGlassPolicy(StrictModel):
    """`policy.break_glass`: self-approved emergency access, reviewed afterwards."""

    allowed: bool = False
    # The longest a break-glass grant may last; `--for` above it is refused.
    max_duration: timedelta = timedelta(hours=1)
    # Who may use it (empty: every member of the workspace).
    members: list[str] = Field(default_factory=list)
    # How long the leads have to review it before the review request expires (and is
    # reminded like any request).
    review_within: timedelta = timedelta(days=2)

    _durations = field_validator("max_duration", "review_within", mode="before")(coerce_duration)

    @model_validator(mode="after")
    def _short(self) -> BreakGlassPolicy:
        if self.max_duration > timedelta(hours=8):
            raise ValueError("max_duration is at most 8h: break-glass access is short by design")
        return self


class DriftPolicy(StrictModel):
    """`policy.drift`: the nightly check of Azure against the bot's records."""

    enabled: bool = True
    # When to run, once a day (UTC).
    at: time = time(2, 0)
    # Role names the check reports when found at the clusters' or workspace's scope without
    # a grant of the bot's (empty: the policy's access role only).
    watched_roles: list[str] = Field(default_factory=list)


def cross_check(
    workspace: str,
    policy: Any,
    members: list[str],
    is_known: Any,
) -> list[str]:
    """What these keys need of the rest of a workspace's configuration, each problem naming
    its rule and key path. `policy` is the workspace's `Policy`; `is_known(ref)` says whether
    a reference names a person."""
    problems = []
    path = f"workspaces.{workspace}.policy"
    limit = policy.until_done.time_limit
    if limit is not None and limit > policy.access.max_duration:
        problems.append(
            f"{path}.until_done.time_limit: rule 'a work-bound grant lasts at most "
            f"policy.access.max_duration': {_fmt(limit)} is longer than "
            f"{_fmt(policy.access.max_duration)}; e.g. time_limit: "
            f"{_fmt(policy.access.max_duration)}"
        )
    if policy.break_glass.max_duration > policy.access.max_duration:
        problems.append(
            f"{path}.break_glass.max_duration: rule 'break-glass lasts at most "
            f"policy.access.max_duration': {_fmt(policy.break_glass.max_duration)} is longer "
            f"than {_fmt(policy.access.max_duration)}"
        )
    for index, ref in enumerate(policy.escalation.fallback_approvers):
        if not is_known(ref):
            problems.append(
                f"{path}.escalation.fallback_approvers.{index}: rule 'fallback approvers are "
                f"people': '{ref}' is not a key of `people`, a Slack user id (U...) or an e-mail"
            )
    for index, ref in enumerate(policy.break_glass.members):
        if ref not in members:
            problems.append(
                f"{path}.break_glass.members.{index}: rule 'only members may break the glass': "
                f"'{ref}' is not a team lead or data scientist of `{workspace}`"
            )
    return problems


def _fmt(value: timedelta) -> str:
    from commands.durations import format_duration

    return format_duration(value)


def until_done_limit(policy: Any) -> timedelta:
    """The time limit of a work-bound grant whose request names none."""
    limit: timedelta = policy.until_done.time_limit or policy.access.max_duration
    return limit
