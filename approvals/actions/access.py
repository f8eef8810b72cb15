"""`access`: a role assignment on a cluster for a time, or an active grant pushed out."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from approvals.actions.base import NAMES, ActionHandler, Carried
from approvals.actions.payloads import AccessPayload, payload_as
from approvals.config import WorkspaceConfig
from approvals.tables import GrantRow, GrantStatus, RequestRow
from approvals.wording import short_ref, when
from approvals.workflow_base import WorkflowBase
from commands.durations import format_duration
from shared.errors import UserError
from workspaces.types import RoleGrantSpec

PROPAGATION_NOTE = "Azure can take up to about 10 minutes to apply a role change everywhere."


def assignment_name(workspace: str, request_id: int) -> str:
    """The role assignment's name, derived from the request so a retry cannot make a second."""
    return str(uuid.uuid5(NAMES, f"grant:{workspace}:{request_id}"))


def spec_of_grant(grant: GrantRow, description: str) -> RoleGrantSpec:
    """The role assignment a recorded grant stands for, as the workspace port takes it."""
    return RoleGrantSpec(
        assignment_name=grant.assignment_name,
        principal_object_id=grant.principal_object_id,
        role_name=grant.role,
        compute=grant.cluster,
        scope=grant.scope,
        mode=grant.mode,
        description=description,
        expires_at=grant.expires_at,
    )


class AccessGrant(ActionHandler):
    def plan(self, row: RequestRow, now: datetime) -> dict[str, Any] | None:
        """The grant's end, decided once: a PIM assignment is made with it, so a retry must
        ask Azure for the same."""
        duration = timedelta(seconds=payload_as(row, AccessPayload).duration_seconds)
        return {"planned_expires_at": (now + duration).isoformat()}

    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        payload = payload_as(row, AccessPayload)
        person = flow.directory.person(row.requester)
        principal = (person.object_id or person.email) if person else None
        if not principal:
            raise UserError(
                f"No Azure AD object id or e-mail is configured for {row.requester}; a "
                f"team lead must add `object_id` for them in the configuration."
            )
        duration = timedelta(seconds=payload.duration_seconds)
        if payload.extends_grant is not None:
            extended = _extend_grant(flow, payload.extends_grant, duration, row)
            if extended is not None:
                return Carried(extended)
        # The grant lasts `duration` from the moment the access exists. A PIM schedule
        # starts when it is asked for and Azure ends it at the end it was given (chosen
        # once, so a resumed request asks Azure for the same end); a plain role
        # assignment exists once the call returns, so its clock starts then.
        planned = _parse_time(str((row.result or {}).get("planned_expires_at", "")))
        asked_at = planned - duration if planned else flow.clock.now()
        pim = ws.policy.access.mode == "pim"
        spec = RoleGrantSpec(
            assignment_name=assignment_name(ws.name, row.id),
            principal_object_id=principal,
            role_name=ws.policy.access.role,
            compute=payload.cluster,
            scope=ws.policy.access.scope,
            mode=ws.policy.access.mode,
            # PIM's audit shows this as the justification: it carries the reason given.
            description=(
                f"amlbot request #{row.id} for {row.requester}"
                + (f': "{row.reason[:300]}"' if row.reason else "")
                + "; "
                + (
                    f"expires {(asked_at + duration).isoformat(timespec='minutes')}"
                    if pim
                    else f"for {format_duration(duration)}, then revoked by amlbot"
                )
            ),
            expires_at=asked_at + duration,
        )
        receipt = flow.backend_for(ws.name).grant_cluster_access(spec)
        granted_at = asked_at if pim else flow.clock.now()
        expires_at = granted_at + duration

        def add_grant(session: Session, now: datetime) -> None:
            session.add(
                GrantRow(
                    request_id=row.id,
                    workspace=ws.name,
                    cluster=spec.compute,
                    grantee=row.requester,
                    principal_object_id=principal,
                    role=spec.role_name,
                    scope=spec.scope,
                    mode=spec.mode,
                    assignment_name=spec.assignment_name,
                    assignment_id=receipt.assignment_id,
                    granted_at=granted_at,
                    expires_at=expires_at,
                    status=GrantStatus.ACTIVE,
                    until_done=payload.until_done,
                )
            )

        return Carried(
            {
                "assignment_id": receipt.assignment_id,
                "expires_at": expires_at.isoformat(),
                "note": receipt.note,
            },
            add_grant,
        )

    def done_text(self, row: RequestRow) -> str:
        payload = payload_as(row, AccessPayload)
        result = row.result or {}
        expires = result.get("expires_at", "")
        until = f"until {when(_parse_time(expires))}"
        if payload.until_done and not result.get("extended_grant"):
            until = f"until the work there is done (at the latest {when(_parse_time(expires))})"
        return (
            f"Request {short_ref(row.id)} done: {row.requester} has access to "
            f"`{payload.cluster}` {until}. {PROPAGATION_NOTE}"
        )


def _extend_grant(
    flow: WorkflowBase, grant_id: int, duration: timedelta, row: RequestRow
) -> dict[str, Any] | None:
    """Push an active grant's expiry out instead of making a second role assignment
    (Azure refuses a second one for the same person, role and scope). None if the grant
    ended meanwhile: then a fresh grant is made."""
    now = flow.clock.now()
    done = row.result or {}
    if done.get("extended_grant") == grant_id:
        # Extended before this process was interrupted: pushing it out again on the
        # retry would give the time twice.
        return dict(done)
    with flow.store.transaction() as session:
        grant = session.get(GrantRow, grant_id)
        if grant is None or grant.status != GrantStatus.ACTIVE or grant.grantee != row.requester:
            return None
        if grant.mode == "pim" and grant.expires_at <= now:
            return None  # Azure ended the PIM assignment at its expiry: nothing to extend
        # A PIM grant's expiry is still ahead here, so its new end derives from the stored
        # expiry alone: a retry before the row below is updated asks Azure for the same
        # end, under the same request name, and extends nothing twice.
        new_expiry = max(grant.expires_at, now) + duration
    spec = spec_of_grant(
        grant,
        f"amlbot request #{row.id} for {row.requester} extends grant #{grant.id}; "
        f"expires {new_expiry.isoformat(timespec='minutes')}",
    )
    # Outside any transaction: for PIM this is a schedule request to Azure, which ends
    # the assignment itself and must hear of the new end.
    flow.backend_for(grant.workspace).extend_cluster_access(spec, new_expiry)
    with flow.store.transaction() as session:
        extended = session.execute(
            update(GrantRow)
            .where(GrantRow.id == grant_id, GrantRow.status == GrantStatus.ACTIVE)
            .values(expires_at=new_expiry, warned_at=None)
            .execution_options(synchronize_session=False)
        )
        if getattr(extended, "rowcount", 0) != 1:
            # Revoked (by its holder, a lead or the expiry sweep) during the call: the
            # revocation wins, and the person must not be told they have access.
            raise UserError(
                f"Grant {short_ref(grant_id)} was revoked while it was being extended, so "
                "it was not extended. Ask for access again."
            )
        result = {
            "assignment_id": grant.assignment_id,
            "expires_at": new_expiry.isoformat(),
            "extended_grant": grant_id,
        }
        # Recorded with the new expiry, so a retry after an interruption finds it done.
        session.execute(
            update(RequestRow)
            .where(RequestRow.id == row.id)
            .values(result=result)
            .execution_options(synchronize_session=False)
        )
    return result


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
