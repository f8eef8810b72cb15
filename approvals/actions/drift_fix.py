"""`drift`: a finding of the nightly drift check fixed in Azure (approvals/drift.py finds
them and opens the request)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from approvals.actions.access import spec_of_grant
from approvals.actions.base import ActionHandler, Carried
from approvals.config import WorkspaceConfig
from approvals.store import Store
from approvals.tables import GrantRow, RequestRow
from approvals.wording import short_ref
from approvals.workflow_base import WorkflowBase
from shared.errors import TransientError, UserError
from workspaces.port import WorkspaceBackend
from workspaces.types import RoleGrantSpec


class DriftFix(ActionHandler):
    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        """A revocation is done only once the assignment is read back gone."""
        return Carried(_fix(flow.backend_for(ws.name), flow.store, row.payload))

    def done_text(self, row: RequestRow) -> str:
        read_back = (
            " Read back from Azure: the assignment is gone."
            if (row.result or {}).get("read_back") == "gone"
            else ""
        )
        return f"Request {short_ref(row.id)} done: {row.summary}.{read_back}"


def _fix(backend: WorkspaceBackend, store: Store, payload: dict[str, Any]) -> dict[str, Any]:
    operation = payload["operation"]
    if operation == "revoke_assignment":
        compute = payload.get("compute")
        spec = RoleGrantSpec(
            assignment_name=str(payload["assignment_name"]),
            principal_object_id=str(payload["principal"]),
            role_name=str(payload["role"]),
            compute=str(compute or ""),
            scope="compute" if compute else "workspace",
            description="removed by amlbot after the drift check",
            expires_at=datetime.fromisoformat("2000-01-01T00:00:00+00:00"),
        )
        backend.revoke_cluster_access(spec)
        if backend.access_assignment_exists(spec):
            raise TransientError(
                f"Azure still lists assignment {spec.assignment_name} after deleting it; the "
                f"bot deletes it again and reads it back until it is gone."
            )
        return {"operation": operation, "removed": spec.assignment_name, "read_back": "gone"}
    if operation == "regrant":
        with store.transaction() as session:
            grant = session.get(GrantRow, int(payload["grant_id"]))
        if grant is None or grant.status != "active":
            raise UserError("The grant is no longer active; nothing to re-grant.")
        receipt = backend.grant_cluster_access(
            spec_of_grant(grant, f"amlbot grant #{grant.id}, re-granted after the drift check")
        )
        return {"operation": operation, "assignment_id": receipt.assignment_id}
    if operation == "set_min_nodes":
        backend.set_cluster_min_nodes(str(payload["compute"]), int(payload["min_nodes"]))
        return {"operation": operation, "compute": payload["compute"]}
    if operation == "set_idle_time":
        backend.set_cluster_idle_time(str(payload["compute"]), int(payload["idle_seconds"]))
        return {"operation": operation, "compute": payload["compute"]}
    raise UserError(f"unknown drift operation {operation!r}")
