"""The core policy of a workspace (its `policy:` key): how long access and requests last,
what jobs, datastores and idle compute may do, and the ordered risk rules.

The policy for access that ends with the work and stays true (until-done grants,
escalation, break-glass, drift) is in `approvals/config_access.py`; the people, clusters
and workspaces it applies to, and loading the file, in `approvals/config.py`.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from approvals.config_access import (
    BreakGlassPolicy,
    DriftPolicy,
    EscalationPolicy,
    UntilDonePolicy,
)
from approvals.rule_models import Rule
from approvals.strict_models import StrictModel, coerce_duration


class Action(enum.StrEnum):
    ACCESS = "access"
    DATASTORE = "datastore"
    JOB = "job"
    COMPUTE = "compute"  # idle-compute actions: stop an instance, set a cluster's minimum


class AccessPolicy(StrictModel):
    default_duration: timedelta = timedelta(hours=4)
    max_duration: timedelta = timedelta(days=2)
    role: str = "AzureML Data Scientist"
    scope: Literal["compute", "workspace"] = "compute"
    mode: Literal["rbac", "pim"] = "rbac"

    _durations = field_validator("default_duration", "max_duration", mode="before")(coerce_duration)


class JobPolicy(StrictModel):
    # A job's expected duration when `--max-duration` is not given: its cost estimate and,
    # in Azure, its timeout (`limits.timeout`). None: no limit, and no estimate in money.
    default_max_duration: timedelta | None = None
    max_duration: timedelta = timedelta(days=7)
    # More instances than this needs a lead even with an active grant (None: up to `nodes`).
    max_instances_without_approval: int | None = Field(default=None, ge=1)
    # Clusters on which every job needs a lead.
    approval_required_on: list[str] = Field(default_factory=list)
    # Without an active grant: refuse with the command that fixes it, or ask a lead.
    without_grant: Literal["refuse", "approval"] = "refuse"

    _durations = field_validator("default_max_duration", "max_duration", mode="before")(
        coerce_duration
    )


class DatastorePolicy(StrictModel):
    # A lead registering a datastore needs no second opinion.
    leads_register_at_once: bool = True
    # Key Vault holding secrets for credential-based datastores (never secrets from chat).
    key_vault: str | None = None


# Azure's own default for a new cluster, and what the seeds and the idle fix set.
RECOMMENDED_IDLE_SECONDS_BEFORE_SCALE_DOWN = 120


class IdlePolicy(StrictModel):
    sweep_interval: timedelta = timedelta(minutes=15)
    idle_threshold: timedelta = timedelta(minutes=30)
    realert_interval: timedelta = timedelta(hours=4)
    max_idle_seconds_before_scale_down: int = 600
    # What the digest's "Set idle time" button sets. At least 1 s: azure-ai-ml cannot send 0.
    recommended_idle_seconds_before_scale_down: int = Field(
        default=RECOMMENDED_IDLE_SECONDS_BEFORE_SCALE_DOWN, ge=1
    )

    # A running compute instance whose idle shutdown is unset or longer than this is
    # reported (Azure stops an idle instance itself after its idle shutdown time).
    max_idle_shutdown_minutes: int = Field(default=60, ge=15, le=4320)
    # What the digest's "Set idle shutdown" button sets; Azure allows 15 min to 3 days.
    recommended_idle_shutdown_minutes: int = Field(default=30, ge=15, le=4320)

    _durations = field_validator(
        "sweep_interval", "idle_threshold", "realert_interval", mode="before"
    )(coerce_duration)

    @model_validator(mode="after")
    def _recommended_within_max(self) -> IdlePolicy:
        # Otherwise the fix would set a value the next sweep flags again.
        if (
            self.recommended_idle_seconds_before_scale_down
            > self.max_idle_seconds_before_scale_down
        ):
            raise ValueError(
                f"recommended_idle_seconds_before_scale_down "
                f"({self.recommended_idle_seconds_before_scale_down}) cannot exceed "
                f"max_idle_seconds_before_scale_down ({self.max_idle_seconds_before_scale_down})"
            )
        if self.recommended_idle_shutdown_minutes > self.max_idle_shutdown_minutes:
            raise ValueError(
                f"recommended_idle_shutdown_minutes ({self.recommended_idle_shutdown_minutes}) "
                f"cannot exceed max_idle_shutdown_minutes ({self.max_idle_shutdown_minutes})"
            )
        return self


class Policy(StrictModel):
    # Ordered risk rules (approvals/rules.py); the first that matches a request decides it.
    # Empty: the fixed behaviour below (access always needs a lead, jobs by `jobs:`).
    rules: list[Rule] = Field(default_factory=list)
    request_ttl: timedelta = timedelta(hours=24)
    remind_before_expiry: timedelta = timedelta(hours=2)
    grant_expiry_warning: timedelta = timedelta(minutes=15)
    job_poll_interval: timedelta = timedelta(minutes=1)
    two_approvers: list[Action] = Field(default_factory=list)
    access: AccessPolicy = AccessPolicy()
    jobs: JobPolicy = JobPolicy()
    datastores: DatastorePolicy = DatastorePolicy()
    idle: IdlePolicy = IdlePolicy()
    # Access that ends with the work and stays true (approvals/config_access.py).
    until_done: UntilDonePolicy = UntilDonePolicy()
    escalation: EscalationPolicy = EscalationPolicy()
    break_glass: BreakGlassPolicy = BreakGlassPolicy()
    drift: DriftPolicy = DriftPolicy()

    _durations = field_validator(
        "request_ttl",
        "remind_before_expiry",
        "grant_expiry_warning",
        "job_poll_interval",
        mode="before",
    )(coerce_duration)
