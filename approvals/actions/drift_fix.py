"""`drift`: a finding of the nightly drift check fixed in Azure (approvals/drift.py finds
them and opens the request)."""

from __future__ import annotations

from datetime import datetime

from approvals.actions.access import spec_of_grant
from approvals.actions.base import ActionHandler, Carried
from approvals.actions.payloads import DriftPayload, payload_as, required
from approvals.config import WorkspaceConfig
from approvals.tables import GrantRow, GrantStatus, RequestRow
from approvals.wording import short_ref
from approvals.workflow_base import WorkflowBase
from shared.errors import TransientError, UserError
from workspaces.types import RoleGrantSpec


class DriftFix(ActionHandler):
    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        """A revocation is done only once the assignment is read back gone."""
        payload = payload_as(row, DriftPayload)
        backend = flow.backend_for(ws.name)
        operation = payload.operation
        if operation == "revoke_assignment":
            spec = RoleGrantSpec(
                assignment_name=required(row, payload.assignment_name, "assignment_name"),
                principal_object_id=required(row, payload.principal, "principal"),
                role_name=required(row, payload.role, "role"),
                compute=payload.compute or "",
                scope="compute" if payload.compute else "workspace",
                description="removed by amlbot after the drift check",
                expires_at=datetime.fromisoformat("2000-01-01T00:00:00+00:00"),
            )
            backend.revoke_cluster_access(spec)
            if backend.access_assignment_exists(spec):
                raise TransientError(
                    f"Azure still lists assignment {spec.assignment_name} after deleting it; "
                    f"the bot deletes it again and reads it back until it is gone."
                )
            return Carried(
                {"operation": operation, "removed": spec.assignment_name, "read_back": "gone"}
            )
        if operation == "regrant":
            with flow.store.transaction() as session:
                grant = session.get(GrantRow, required(row, payload.grant_id, "grant_id"))
            if grant is None or grant.status != GrantStatus.ACTIVE:
                raise UserError("The grant is no longer active; nothing to re-grant.")
            receipt = backend.grant_cluster_access(
                spec_of_grant(grant, f"amlbot grant #{grant.id}, re-granted after the drift check")
            )
            return Carried({"operation": operation, "assignment_id": receipt.assignment_id})
        compute = required(row, payload.compute, "compute")
        if operation == "set_min_nodes":
            backend.set_cluster_min_nodes(compute, required(row, payload.min_nodes, "min_nodes"))
        else:
            backend.set_cluster_idle_time(
                compute, required(row, payload.idle_seconds, "idle_seconds")
            )
        return Carried({"operation": operation, "compute": compute})

    def done_text(self, row: RequestRow) -> str:
        read_back = (
            " Read back from Azure: the assignment is gone."
            if (row.result or {}).get("read_back") == "gone"
            else ""
        )
        return f"Request {short_ref(row.id)} done: {row.summary}.{read_back}"
