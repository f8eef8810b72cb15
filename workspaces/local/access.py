"""The simulated workspace's role assignments: access grants made, extended and removed by
name, at Azure-shaped scopes. Time-bound (PIM) ones end by themselves, as in Azure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import ConflictError, NotFoundError
from workspaces.local.tables import SimRoleAssignmentRow
from workspaces.types import GrantReceipt, RoleGrantSpec


@dataclass(frozen=True)
class RoleAssignment:
    """A role assignment as the simulated workspace holds it (see `in_force`)."""

    assignment_name: str
    assignment_id: str
    principal_object_id: str
    role_name: str
    compute: str
    scope: str
    mode: str
    description: str
    expires_at: datetime


def assignment_id(scope: str, assignment_name: str) -> str:
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{assignment_name}"


def grant(
    session: Session, workspace: str, spec: RoleGrantSpec, scope: str, now: datetime
) -> GrantReceipt:
    row = session.get(SimRoleAssignmentRow, (workspace, spec.assignment_name))
    if row is None:
        session.add(
            SimRoleAssignmentRow(
                workspace=workspace,
                assignment_name=spec.assignment_name,
                principal_object_id=spec.principal_object_id,
                role_name=spec.role_name,
                compute=spec.compute,
                scope=scope,
                mode=spec.mode,
                description=spec.description,
                expires_at=spec.expires_at,
                created_at=now,
            )
        )
        note = "Role assigned in the simulated workspace."
    elif (row.principal_object_id, row.role_name, row.scope) == (
        spec.principal_object_id,
        spec.role_name,
        scope,
    ):
        note = "The role assignment already existed; nothing changed."
    else:
        # Azure refuses to change an assignment in place (RoleAssignmentUpdateNotPermitted);
        # so does the simulation.
        raise ConflictError(
            f"Role assignment {spec.assignment_name} already exists for another principal, "
            "role or scope, and an assignment cannot be changed in place."
        )
    if spec.mode == "pim":
        note += f" It ends by itself at {spec.expires_at.isoformat(timespec='minutes')}."
    return GrantReceipt(
        assignment_id=assignment_id(scope, spec.assignment_name),
        scope=scope,
        role_name=spec.role_name,
        note=note,
    )


def revoke(session: Session, workspace: str, spec: RoleGrantSpec) -> None:
    row = session.get(SimRoleAssignmentRow, (workspace, spec.assignment_name))
    if row is not None:
        session.delete(row)


def extend(
    session: Session, workspace: str, spec: RoleGrantSpec, new_expiry: datetime, now: datetime
) -> GrantReceipt:
    row = session.get(SimRoleAssignmentRow, (workspace, spec.assignment_name))
    # A time-bound (PIM) assignment past its end is gone, as in `in_force`.
    if row is None or (row.mode == "pim" and row.expires_at <= now):
        raise NotFoundError(
            f"Role assignment {spec.assignment_name} ('{spec.role_name}' on {spec.compute}) "
            "no longer exists, so it cannot be extended. Ask for access again."
        )
    row.expires_at = new_expiry
    return GrantReceipt(
        assignment_id=assignment_id(row.scope, spec.assignment_name),
        scope=row.scope,
        role_name=spec.role_name,
        note=f"It now ends at {new_expiry.isoformat(timespec='minutes')}.",
    )


def in_force(session: Session, workspace: str, now: datetime) -> list[RoleAssignment]:
    rows = session.scalars(
        select(SimRoleAssignmentRow)
        .where(SimRoleAssignmentRow.workspace == workspace)
        .order_by(SimRoleAssignmentRow.created_at, SimRoleAssignmentRow.assignment_name)
    ).all()
    return [
        RoleAssignment(
            assignment_name=row.assignment_name,
            assignment_id=assignment_id(row.scope, row.assignment_name),
            principal_object_id=row.principal_object_id,
            role_name=row.role_name,
            compute=row.compute,
            scope=row.scope,
            mode=row.mode,
            description=row.description,
            expires_at=row.expires_at,
        )
        for row in rows
        if not (row.mode == "pim" and row.expires_at <= now)
    ]
