"""Drift, checked: does Azure still match what the bot believes?

Once a night per workspace (`policy.drift`), and on `/aml drift check`, the bot reads the
role assignments of the policy's role (and `policy.drift.watched_roles`) at the workspace's
and its computes' scopes, and the clusters' scale settings, and compares them with its own
records:

- `stray`: an assignment the bot did not make (nor any grant it knows);
- `missing`: a grant the bot believes active whose assignment Azure lacks;
- `revocation_not_taken`: a grant the bot revoked whose assignment is still there;
- `min_nodes` / `idle_time`: a cluster whose minimum or idle time before scale-down is above
  what the configuration says (it drifted back after being fixed, or was never set).

Each finding is stored (`drift_findings`), and the leads get one report listing them, each
with a button: revoke the stray assignment (as a request, audited), re-grant, revoke again,
or set the cluster's setting back. A revocation is reported done only after the assignment
was read back gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update

from approvals import outbox
from approvals.config import WorkspaceConfig
from approvals.payloads import DriftPayload
from approvals.replies import Reply
from approvals.states import RequestStatus
from approvals.store import Store
from approvals.tables import DriftFindingRow, DriftStatus, GrantRow, GrantStatus
from approvals.wording import short_ref
from shared.errors import NotFoundUserError, PermissionRefusedError, UserError
from shared.wording import counted
from workspaces.port import WorkspaceBackend
from workspaces.types import AccessAssignment, ComputeInventory

Kind = Literal["stray", "missing", "revocation_not_taken", "min_nodes", "idle_time"]

# {workspace, report_id, findings: [ids], text}: one report to the workspace's leads.
DRIFT_REPORT = "drift.report"

FIX_LABELS: dict[str, str] = {
    "stray": "Revoke it",
    "revocation_not_taken": "Revoke again",
    "missing": "Re-grant",
    "min_nodes": "Set minimum back",
    "idle_time": "Set idle time back",
}


@dataclass(frozen=True)
class Finding:
    kind: Kind
    compute: str | None
    text: str
    detail: dict[str, Any]


def compare(
    ws: WorkspaceConfig,
    assignments: list[AccessAssignment],
    grants: list[GrantRow],
    inventory: ComputeInventory,
) -> list[Finding]:
    """What differs between Azure (`assignments`, `inventory`) and the bot's records
    (`grants`: every grant of the workspace, any status). Pure."""
    findings: list[Finding] = []
    by_name = {a.assignment_name.lower(): a for a in assignments}
    grant_names = {g.assignment_name.lower(): g for g in grants}
    for assignment in assignments:
        grant = grant_names.get(assignment.assignment_name.lower())
        where = f"`{assignment.compute}`" if assignment.compute else "the whole workspace"
        detail = {
            "assignment_name": assignment.assignment_name,
            "principal": assignment.principal_object_id,
            "role": assignment.role_name,
            "compute": assignment.compute,
        }
        if grant is None:
            findings.append(
                Finding(
                    "stray",
                    assignment.compute,
                    f"*{assignment.role_name}* on {where} for principal "
                    f"`{assignment.principal_object_id}` was not made by the bot "
                    f"(assignment `{assignment.assignment_name}`).",
                    detail,
                )
            )
        elif grant.status == GrantStatus.REVOKED:
            findings.append(
                Finding(
                    "revocation_not_taken",
                    assignment.compute,
                    f"Grant {short_ref(grant.id)} ({grant.grantee} on {where}) was revoked "
                    f"{grant.revoked_at:%Y-%m-%d %H:%M} UTC, but Azure still has its "
                    f"assignment.",
                    {**detail, "grant_id": grant.id},
                )
            )
    for grant in grants:
        if grant.status != GrantStatus.ACTIVE or grant.mode != "rbac":
            continue  # a PIM assignment is Azure's to end; `revoking` is being handled
        if grant.assignment_name.lower() in by_name:
            continue
        findings.append(
            Finding(
                "missing",
                grant.cluster,
                f"Grant {short_ref(grant.id)} ({grant.grantee} on `{grant.cluster}`, until "
                f"{grant.expires_at:%Y-%m-%d %H:%M} UTC) is active for the bot, but Azure has "
                f"no assignment for it.",
                {"grant_id": grant.id, "assignment_name": grant.assignment_name},
            )
        )
    for cluster in ws.clusters:
        info = inventory.cluster(cluster.name)
        if info is None:
            continue
        if info.min_nodes > cluster.min_nodes:
            findings.append(
                Finding(
                    "min_nodes",
                    cluster.name,
                    f"Cluster `{cluster.name}` keeps {counted(info.min_nodes, 'node')} at "
                    f"minimum; the configuration says {cluster.min_nodes}.",
                    {"azure": info.min_nodes, "configured": cluster.min_nodes},
                )
            )
        idle = info.idle_seconds_before_scale_down
        if idle is not None and idle > cluster.idle_seconds_before_scale_down:
            findings.append(
                Finding(
                    "idle_time",
                    cluster.name,
                    f"Cluster `{cluster.name}` waits {idle} s before scaling down; the "
                    f"configuration says {cluster.idle_seconds_before_scale_down} s.",
                    {"azure": idle, "configured": cluster.idle_seconds_before_scale_down},
                )
            )
    return findings


def watched_roles(ws: WorkspaceConfig) -> list[str]:
    return list(dict.fromkeys([ws.policy.access.role, *ws.policy.drift.watched_roles]))


def check_workspace(
    store: Store, ws: WorkspaceConfig, backend: WorkspaceBackend, now: datetime
) -> int | None:
    """Read Azure, compare, store the findings and queue one report to the leads. Returns
    the report id, or None when nothing drifted."""
    assignments = [a for role in watched_roles(ws) for a in backend.list_access_assignments(role)]
    inventory = backend.list_computes()
    with store.transaction() as session:
        grants = list(session.scalars(select(GrantRow).where(GrantRow.workspace == ws.name)))
    findings = compare(ws, assignments, grants, inventory)
    if not findings:
        return None
    with store.transaction() as session:
        rows = [
            DriftFindingRow(
                workspace=ws.name,
                found_at=now,
                kind=f.kind,
                compute=f.compute,
                text=f.text,
                detail=f.detail,
                status=DriftStatus.OPEN,
            )
            for f in findings
        ]
        session.add_all(rows)
        session.flush()
        report_id = rows[0].id
        text = "\n".join(f"• {row.text}" for row in rows)
        outbox.enqueue(
            session,
            DRIFT_REPORT,
            {
                "workspace": ws.name,
                "report_id": report_id,
                "findings": [row.id for row in rows],
                "text": f"Drift check of `{ws.name}`: Azure differs from the bot's records in "
                f"{counted(len(rows), 'place')}.\n{text}",
            },
            now=now,
            dedupe_key=f"drift:{ws.name}:{report_id}",
        )
    return report_id


def findings_of(store: Store, ids: list[int]) -> list[DriftFindingRow]:
    with store.transaction() as session:
        return list(
            session.scalars(
                select(DriftFindingRow)
                .where(DriftFindingRow.id.in_(ids))
                .order_by(DriftFindingRow.id)
            )
        )


def fix_request(
    store: Store, ws: WorkspaceConfig, finding_id: int, person: str
) -> tuple[DriftFindingRow, DriftPayload, str]:
    """Claim a finding for `person` (a lead) and say what request fixes it: the payload of
    a `drift` request and its summary. Raises a `UserError` a person can act on."""
    if person not in ws.team_leads:
        raise PermissionRefusedError(
            f"Only team leads of `{ws.name}` ({', '.join(ws.team_leads)}) can act on a drift "
            f"finding."
        )
    with store.transaction() as session:
        finding = session.get(DriftFindingRow, finding_id)
        if finding is None or finding.workspace != ws.name:
            raise NotFoundUserError(f"There is no drift finding {short_ref(finding_id)}.")
        claimed = session.execute(
            update(DriftFindingRow)
            .where(DriftFindingRow.id == finding_id, DriftFindingRow.status == DriftStatus.OPEN)
            .values(status=DriftStatus.FIXING, handled_by=person)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise UserError(
                f"Drift finding {short_ref(finding_id)} is already {finding.status}"
                + (f" by {finding.handled_by}" if finding.handled_by else "")
                + "."
            )
        session.refresh(finding)
        detail = dict(finding.detail)
        if finding.kind in ("stray", "revocation_not_taken"):
            payload = DriftPayload(
                operation="revoke_assignment",
                assignment_name=detail["assignment_name"],
                principal=detail["principal"],
                role=detail["role"],
                grant_id=detail.get("grant_id"),
                finding_id=finding.id,
                kind=finding.kind,
                compute=finding.compute,
            )
            summary = f"revoke assignment {detail['assignment_name']} found by the drift check"
        elif finding.kind == "missing":
            grant = session.get(GrantRow, int(detail["grant_id"]))
            if grant is None:
                raise NotFoundUserError(f"Grant {short_ref(int(detail['grant_id']))} is gone.")
            payload = DriftPayload(
                operation="regrant",
                grant_id=grant.id,
                assignment_name=detail["assignment_name"],
                finding_id=finding.id,
                kind=finding.kind,
                compute=finding.compute,
            )
            summary = f"re-grant {grant.grantee} on {grant.cluster} (drift check)"
        elif finding.kind == "min_nodes":
            payload = DriftPayload(
                operation="set_min_nodes",
                min_nodes=detail["configured"],
                finding_id=finding.id,
                kind=finding.kind,
                compute=finding.compute,
            )
            summary = f"set minimum nodes of {finding.compute} back to {detail['configured']}"
        else:
            payload = DriftPayload(
                operation="set_idle_time",
                idle_seconds=detail["configured"],
                finding_id=finding.id,
                kind=finding.kind,
                compute=finding.compute,
            )
            summary = f"set idle time of {finding.compute} back to {detail['configured']} s"
        return finding, payload, summary


def settle_finding(store: Store, finding_id: int, request_id: int, status: RequestStatus) -> None:
    """After the fixing request ended: `fixed`, or `open` again so someone can retry."""
    with store.transaction() as session:
        session.execute(
            update(DriftFindingRow)
            .where(DriftFindingRow.id == finding_id)
            .values(status=_settled(status), request_id=request_id)
            .execution_options(synchronize_session=False)
        )


def _settled(status: RequestStatus) -> DriftStatus:
    if status == RequestStatus.SUCCEEDED:
        return DriftStatus.FIXED
    if status in (RequestStatus.APPROVED, RequestStatus.EXECUTING):
        return DriftStatus.FIXING  # retried by the recovery sweep (e.g. the read-back still saw it)
    return DriftStatus.OPEN


def drift_reply(text: str, ok: bool = True, request_id: int | None = None) -> Reply:
    return Reply(text=text, ok=ok, request_id=request_id)
