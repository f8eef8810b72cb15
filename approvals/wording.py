"""Platform-neutral descriptions of requests, grants and jobs, for replies and cards.

Text uses the small markup Slack and a terminal both read well: `code` and *bold*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from approvals.config import AppConfig, WorkspaceConfig
from approvals.directory import fallback_approvers
from approvals.payloads import (
    AccessPayload,
    Assessed,
    DatastorePayload,
    DriftPayload,
    JobPayload,
    ReviewPayload,
    rule_of,
)
from approvals.states import RequestStatus
from approvals.tables import GrantRow, JobRow, RequestRow
from commands.durations import format_duration
from shared.wording import counted
from workspaces.prices import PRICE_SOURCE, format_price, price_for
from workspaces.types import JobInfo, Priority

STATUS_WORDS = {
    RequestStatus.PENDING: "waiting for a team lead",
    RequestStatus.APPROVED: "approved",
    RequestStatus.EXECUTING: "being carried out",
    RequestStatus.SUCCEEDED: "done",
    RequestStatus.FAILED: "failed",
    RequestStatus.DENIED: "denied",
    RequestStatus.CANCELLED: "cancelled",
    RequestStatus.EXPIRED: "expired",
}


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def short_ref(request_id: int) -> str:
    return f"#{request_id}"


@dataclass
class RequestDescription:
    """A request's card: a title, labelled facts, and the state it is in."""

    request_id: int
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    status: RequestStatus = RequestStatus.PENDING
    status_line: str = ""

    def as_text(self) -> str:
        lines = [f"*{self.title}*"]
        lines += [f"  {label}: {value}" for label, value in self.facts]
        if self.status_line:
            lines.append(f"  Status: {self.status_line}")
        return "\n".join(lines)


def describe_request(
    row: RequestRow, config: AppConfig, approved_by: list[str] | None = None
) -> RequestDescription:
    """`approved_by`: the leads who approved so far, for a request that needs several."""
    payload = row.payload
    ws = config.workspaces.get(row.workspace)
    facts: list[tuple[str, str]] = [("Requested by", row.requester), ("Workspace", row.workspace)]
    if isinstance(payload, AccessPayload):
        title = f"{short_ref(row.id)} Access to cluster {payload.cluster}"
        facts += _access_facts(payload, ws)
    elif isinstance(payload, DatastorePayload):
        title = f"{short_ref(row.id)} Register datastore {payload.name}"
        facts += [
            ("Azure action", f"create a {payload.store_kind} datastore in the workspace"),
            ("Storage", f"account `{payload.account}`, container `{payload.container}`"),
            ("Credentials", "none: identity-based access (no secret stored)"),
        ]
        if payload.description:
            facts.append(("Description", payload.description))
    elif isinstance(payload, JobPayload):
        title = f"{short_ref(row.id)} Run a job on {payload.compute}"
        facts += [
            ("Azure action", "submit a command job"),
            ("Command", f"`{payload.command}`"),
            ("Environment", f"`{payload.environment}`"),
            ("Instances", str(payload.instances)),
        ]
        if payload.job_alone:
            facts.append(("Access", "none granted: approving runs this one job, nothing more"))
        if payload.inputs:
            facts.append(
                ("Inputs", ", ".join(f"{k}={v}" for k, v in sorted(payload.inputs.items())))
            )
    elif isinstance(payload, DriftPayload):
        title = f"{short_ref(row.id)} Fix drift: {row.summary}"
        facts.append(("Azure action", payload.operation))
    elif isinstance(payload, ReviewPayload):
        title = f"{short_ref(row.id)} Review break-glass access to {payload.cluster}"
        facts += [
            (
                "What happened",
                f"{row.requester} approved their own access to `{payload.cluster}` for "
                f"{format_duration(timedelta(seconds=payload.duration_seconds))} in an "
                f"emergency (request {short_ref(payload.reviews)}), as policy allows",
            ),
            ("Review", "Approve: it was justified. Deny: it was not; the access ends now"),
        ]
    else:
        title = f"{short_ref(row.id)} {payload.title or 'Change compute'}"
        facts.append(("Azure action", payload.description or ""))
    if isinstance(payload, Assessed):
        facts += _risk_facts(row.action, payload)
    if row.reason:
        facts.append(("Reason", row.reason))
    if isinstance(payload, AccessPayload) and payload.emergency:
        review = payload.review_request
        facts.append(
            (
                "Break-glass",
                "self-approved in an emergency, as policy allows"
                + (f"; marked for review: request {short_ref(review)}" if review else ""),
            )
        )
    if ws is not None and row.escalated_at is not None:
        facts.append(("Escalated", escalation_line(row, ws, config) or ""))
    ended = (row.result or {}).get("access_ended") if row.action == "access" else None
    if isinstance(ended, dict):
        facts.append(("Access", access_end_line(ended)))
    status = RequestStatus(row.status)
    return RequestDescription(
        request_id=row.id,
        title=title,
        facts=facts,
        status=status,
        status_line=status_line(row, approved_by),
    )


def _access_facts(payload: AccessPayload, ws: WorkspaceConfig | None) -> list[tuple[str, str]]:
    """What granting the access does in Azure, and what the cluster costs."""
    cluster = ws.cluster(payload.cluster) if ws else None
    policy = ws.policy.access if ws else None
    scope = (
        "the cluster's resource scope"
        if (policy and policy.scope == "compute")
        else ("the whole workspace")
    )
    facts = [
        ("Azure action", access_action(policy.mode if policy else "rbac")),
        ("Role", policy.role if policy else "-"),
        (
            "Scope",
            f"{scope} (…/workspaces/{ws.azure.workspace_name if ws else '?'}"
            f"/computes/{payload.cluster})"
            if policy and policy.scope == "compute"
            else scope,
        ),
        ("Duration", _access_duration(payload, ws)),
    ]
    if cluster is not None:
        low = cluster.priority == Priority.LOW_PRIORITY
        quote = price_for(cluster.vm_sku, ws.region if ws else None, low_priority=low)
        facts.append(
            (
                "Cluster",
                f"{cluster.vm_sku}, up to {counted(cluster.nodes, 'node')}, "
                f"{'low priority' if low else 'dedicated'}",
            )
        )
        if quote is not None:
            price = quote.usd_per_hour
            facts.append(
                (
                    "Est. cost",
                    f"{format_price(price)}/node-hour, up to "
                    f"{format_price(price * cluster.nodes)}/hour at full size "
                    f"({quote.provenance()})",
                )
            )
    return facts


def _access_duration(payload: AccessPayload, ws: WorkspaceConfig | None) -> str:
    limit = format_duration(timedelta(seconds=payload.duration_seconds))
    if not payload.until_done:
        return limit
    idle = format_duration(ws.policy.until_done.idle_period) if ws else "the idle period"
    return (
        f"until the work is done: ends {idle} after the requester's last job on the cluster "
        f"finished, or after {limit} (the time limit), whichever comes first"
    )


ACCESS_END_WORDS = {
    "work_done": "ended with the work",
    "time_limit": "ended at its time limit",
    "expired": "expired",
    "revoked": "revoked",
}


def access_end_line(ended: dict[str, object]) -> str:
    """How a grant ended, for its request's card: which of work, time limit or a person."""
    at = ended.get("at")
    moment = when(datetime.fromisoformat(at)) if isinstance(at, str) else "-"
    word = ACCESS_END_WORDS.get(str(ended.get("why")), "ended")
    return f"{word} {moment}: {ended.get('reason', '')}"


def _risk_facts(action: str, kept: Assessed) -> list[tuple[str, str]]:
    """The rule that decided, the estimate and the budget, as kept when it was asked."""
    facts: list[tuple[str, str]] = []
    if kept.rule is not None and kept.rule.headline:
        facts.append(("Policy", kept.rule.headline))
    estimate = kept.estimate
    if estimate is not None and estimate.explain:
        label = "Est. cost, whole grant" if action == "access" else "Est. cost"
        # Requests asked before prices named their source say what kind of prices they were.
        if estimate.usd is None:  # the explanation says there is no price
            facts.append((label, estimate.explain))
        else:
            facts.append((label, f"{estimate.explain} ({estimate.source or PRICE_SOURCE})"))
    if isinstance(kept, JobPayload) and kept.max_duration_seconds:
        facts.append(("Time limit", format_duration(timedelta(seconds=kept.max_duration_seconds))))
    if kept.budget_line:
        facts.append(("Spend", kept.budget_line))
    if kept.capacity:
        facts.append(("Capacity", kept.capacity))
    return facts


def access_action(mode: str) -> str:
    """What granting access does in Azure, in the policy's mode."""
    if mode == "pim":
        return (
            "request an active PIM role assignment (AdminAssign) that Azure ends by itself "
            "when it expires; revoked early by an AdminRemove request"
        )
    return "create a role assignment, deleted again when it expires"


def revocation_done(mode: str) -> str:
    """What revoking a grant did in Azure, in the grant's mode."""
    if mode == "pim":
        return "PIM's active assignment is ended by an AdminRemove request"
    return "the role assignment is deleted"


def status_line(row: RequestRow, approved_by: list[str] | None = None) -> str:
    status = RequestStatus(row.status)
    word = STATUS_WORDS[status]
    if status == RequestStatus.PENDING and approved_by:
        left = row.approvals_needed - len(approved_by)
        more = "one more team lead" if left == 1 else f"{left} more team leads"
        return (
            f"approved by {', '.join(approved_by)}; waiting for {more} "
            f"({row.approvals_needed} approvals needed); expires {when(row.expires_at)}"
        )
    if status == RequestStatus.PENDING:
        needed = f" ({row.approvals_needed} approvals needed)" if row.approvals_needed > 1 else ""
        rule = rule_of(row.payload)
        if rule is not None and rule.approvers:
            word = f"waiting for group `{rule.approvers}`"
        return f"{word}{needed}; expires {when(row.expires_at)}"
    if status in {RequestStatus.APPROVED, RequestStatus.EXECUTING}:
        return f"{word} (approved by {row.decided_by})"
    if status == RequestStatus.SUCCEEDED:
        rule = rule_of(row.payload)
        by = f"approved by {row.decided_by}" if row.decided_by != "policy" else "within policy"
        if row.decided_by == "policy" and rule is not None and rule.headline:
            by = rule.headline
        return f"{word}, {by}, {when(row.finished_at)}"
    if status == RequestStatus.FAILED:
        return f"{word}: {row.error}"
    if status == RequestStatus.DENIED:
        return f"{word} by {row.decided_by}: {row.deny_reason}"
    return f"{word} {when(row.decided_at or row.finished_at)}"


def describe_grant(grant: GrantRow, now: datetime) -> str:
    left = grant.expires_at - now
    remaining = format_duration(left) if left.total_seconds() > 0 else "expired"
    return (
        f"grant {short_ref(grant.id)}: *{grant.grantee}* on `{grant.cluster}` "
        f"({grant.role}), expires {when(grant.expires_at)} ({remaining} left)"
    )


def describe_job(job: JobInfo) -> str:
    parts = [f"`{job.name}`: *{job.status.value}*"]
    if job.compute:
        parts.append(f"on `{job.compute}`")
    if job.display_name and job.display_name != job.name:
        parts.append(f"({job.display_name})")
    text = " ".join(parts)
    if job.error:
        text += f"\n  Error: {job.error}"
    if job.metrics:
        text += "\n  Metrics: " + ", ".join(f"{k}={v:g}" for k, v in sorted(job.metrics.items()))
    if job.studio_url:
        text += f"\n  Studio: {job.studio_url}"
    return text


def describe_job_row(job: JobRow) -> str:
    text = f"`{job.name}`: *{job.status}* on `{job.compute}` by {job.requester}"
    if job.request_id:
        text += f" (request {short_ref(job.request_id)})"
    return text


def escalation_line(row: RequestRow, ws: WorkspaceConfig, config: AppConfig) -> str | None:
    """What a card says once its request was escalated."""
    if row.escalated_at is None:
        return None
    after = ws.policy.escalation.escalate_after
    waited = f" after {format_duration(after)} without a decision" if after else ""
    names = ", ".join(fallback_approvers(ws, config, row.requester)) or "nobody"
    return f"escalated {when(row.escalated_at)}{waited}; {names} may decide it too"
