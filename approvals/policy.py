"""What runs at once, what needs a team lead, and what is refused. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from approvals.config import ClusterConfig, WorkspaceConfig
from approvals.config_access import until_done_limit
from approvals.config_policy import Action
from commands.durations import format_duration
from commands.models import AccessRequest
from shared.errors import PermissionRefusedError, UsageError
from shared.wording import counted

if TYPE_CHECKING:
    from approvals.directory import Directory


@dataclass(frozen=True)
class Decision:
    run_now: bool
    approvals_needed: int = 1
    why: str = ""
    # The policy rule that decided (approvals/rules.py), if one did.
    rule: str | None = None


def _approvals_needed(ws: WorkspaceConfig, action: Action) -> int:
    return 2 if action in ws.policy.two_approvers else 1


def _needs_lead(ws: WorkspaceConfig, action: Action, requester: str, why: str) -> Decision:
    needed = _approvals_needed(ws, action)
    other_leads = [lead for lead in ws.team_leads if lead != requester]
    if len(other_leads) < needed:
        raise PermissionRefusedError(
            f"This needs {counted(needed, 'team lead')} of `{ws.name}` other than you, and the "
            f"workspace has {len(other_leads)}. Ask an administrator to add a lead to the "
            "configuration."
        )
    return Decision(run_now=False, approvals_needed=needed, why=why)


def needs_approvers(
    ws: WorkspaceConfig,
    requester: str,
    needed: int,
    why: str,
    group: str | None,
    directory: Directory,
) -> Decision:
    """`needed` distinct approvals from the leads, or from the members of `group`."""
    if group is None:
        other_leads = [lead for lead in ws.team_leads if lead != requester]
        if len(other_leads) < needed:
            raise PermissionRefusedError(
                f"This needs {counted(needed, 'team lead')} of `{ws.name}` other than you, and the "
                f"workspace has {len(other_leads)}. Ask an administrator to add a lead."
            )
        return Decision(run_now=False, approvals_needed=needed, why=why)
    config = directory.config.groups[group]
    # A Slack user group is only known when asked; its size is checked at the click.
    others = [name for name in directory.group_members(group) if name != requester]
    if config.slack_usergroup is None and len(others) < needed:
        raise PermissionRefusedError(
            f"This needs {counted(needed, 'approver')} from group `{group}` other than you, and "
            f"it has {len(others)}. Ask an administrator to add someone to the group."
        )
    return Decision(run_now=False, approvals_needed=needed, why=why)


def workspace_flag(ws: WorkspaceConfig, needed: bool) -> str:
    """` --workspace NAME` for a suggested command that must name its workspace to work
    where it is typed (the person belongs to several, or named one themselves)."""
    return f" --workspace {ws.name}" if needed else ""


def require_cluster(ws: WorkspaceConfig, name: str, name_workspace: bool = False) -> ClusterConfig:
    cluster = ws.cluster(name)
    if cluster is None:
        known = ", ".join(c.name for c in ws.clusters) or "none"
        raise UsageError(
            f"Workspace `{ws.name}` has no cluster `{name}`. Clusters: {known}.",
            field="CLUSTER",
            example=f"/aml compute list{workspace_flag(ws, name_workspace)}",
        )
    return cluster


def _with_hours(duration: timedelta) -> str:
    """`4d3h (99h)`: a day or more in hours too. People type `--for 99h` as often as
    `--for 4d3h`, and a refusal that only said `4d3h` read as if they had typed that."""
    text = format_duration(duration)
    hours = duration / timedelta(hours=1)
    if duration >= timedelta(days=1) and hours == int(hours):
        return f"{text} ({int(hours)}h)"
    return text


def access_duration(ws: WorkspaceConfig, asked: timedelta | None) -> timedelta:
    policy = ws.policy.access
    duration = asked or policy.default_duration
    if duration > policy.max_duration:
        raise UsageError(
            f"`--for`: {_with_hours(duration)} is longer than workspace `{ws.name}` allows: "
            f"at most {_with_hours(policy.max_duration)}.",
            field="--for",
            example=f"--for {format_duration(policy.default_duration)}",
        )
    return duration


def asked_access_duration(
    ws: WorkspaceConfig, cluster: ClusterConfig, command: AccessRequest
) -> timedelta:
    """How long access is asked for: `--for`, else a work-bound grant's time limit, else the
    policy's default; refused above the policy's maximum."""
    until_done = command.until_done or cluster.until_done
    return access_duration(
        ws, command.duration or (until_done_limit(ws.policy) if until_done else None)
    )


def job_limit(ws: WorkspaceConfig, asked: timedelta | None) -> timedelta | None:
    """A job's time limit: `--max-duration`, else the policy's default (None: no limit)."""
    policy = ws.policy.jobs
    limit = asked or policy.default_max_duration
    if limit is not None and limit > policy.max_duration:
        raise UsageError(
            f"`--max-duration`: {_with_hours(limit)} is longer than workspace `{ws.name}` "
            f"allows: at most {_with_hours(policy.max_duration)}.",
            field="--max-duration",
            example="--max-duration 4h",
        )
    return limit


def decide_access(ws: WorkspaceConfig, requester: str) -> Decision:
    # Access to a cluster always needs a lead, whoever asks.
    return _needs_lead(ws, Action.ACCESS, requester, "cluster access always needs a team lead")


def decide_datastore(ws: WorkspaceConfig, requester: str) -> Decision:
    lead_may_act = requester in ws.team_leads and ws.policy.datastores.leads_register_at_once
    if lead_may_act and _approvals_needed(ws, Action.DATASTORE) == 1:
        return Decision(run_now=True, why="team leads register datastores themselves")
    return _needs_lead(ws, Action.DATASTORE, requester, "registering a datastore needs a lead")


def decide_job(
    ws: WorkspaceConfig,
    requester: str,
    cluster: ClusterConfig,
    instances: int,
    has_grant: bool,
    name_workspace: bool = False,
) -> Decision:
    """Run at once with a grant and within limits; otherwise ask a lead or refuse with the fix.

    `name_workspace`: the suggested fix must carry `--workspace` to work where it is typed."""
    if instances > cluster.nodes:
        raise UsageError(
            f"`--instances {instances}` is more than cluster `{cluster.name}` has "
            f"(at most {cluster.nodes} nodes).",
            field="--instances",
            example=f"--instances {min(2, cluster.nodes)}",
        )
    policy = ws.policy.jobs
    is_lead = requester in ws.team_leads
    if not (is_lead or has_grant or not cluster.requires_grant):
        if policy.without_grant == "refuse":
            default_for = format_duration(ws.policy.access.default_duration)
            raise PermissionRefusedError(
                f"You have no active access to `{cluster.name}` in `{ws.name}`, so the job was "
                f"not submitted. Ask for access first:\n"
                f"`/aml access request {cluster.name}{workspace_flag(ws, name_workspace)} "
                f"--for {default_for} "
                f'--reason "what you need it for"`'
            )
        return _needs_lead(ws, Action.JOB, requester, "no active access grant on the cluster")
    if Action.JOB in ws.policy.two_approvers and not is_lead:
        return _needs_lead(ws, Action.JOB, requester, "jobs in this workspace need two leads")
    if cluster.name in policy.approval_required_on and not is_lead:
        return _needs_lead(ws, Action.JOB, requester, f"every job on {cluster.name} needs a lead")
    limit = policy.max_instances_without_approval
    if limit is not None and instances > limit and not is_lead:
        return _needs_lead(
            ws, Action.JOB, requester, f"more than {limit} instances needs a team lead"
        )
    return Decision(run_now=True, why="within policy")


def decide_compute_action(ws: WorkspaceConfig, requester: str) -> Decision:
    if requester in ws.team_leads:
        return Decision(run_now=True, why="team leads manage compute")
    return _needs_lead(ws, Action.COMPUTE, requester, "changing compute needs a team lead")
