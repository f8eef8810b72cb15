"""`compute`: one setting of a compute changed (asked for, or from the idle digest)."""

from __future__ import annotations

from approvals.actions.base import ActionHandler, Carried
from approvals.config import WorkspaceConfig
from approvals.tables import RequestRow
from approvals.workflow_base import WorkflowBase
from shared.errors import UserError


class ComputeChange(ActionHandler):
    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        payload = row.payload
        backend = flow.backend_for(ws.name)
        operation = payload["operation"]
        if operation == "stop_instance":
            backend.stop_instance(payload["compute"])
        elif operation == "set_min_nodes":
            backend.set_cluster_min_nodes(payload["compute"], int(payload["min_nodes"]))
        elif operation == "set_idle_time":
            backend.set_cluster_idle_time(payload["compute"], int(payload["idle_seconds"]))
        elif operation == "set_idle_shutdown":
            backend.set_instance_idle_shutdown(
                payload["compute"], int(payload["idle_shutdown_minutes"])
            )
        else:
            raise UserError(f"unknown compute operation {operation!r}")
        return Carried({"operation": operation, "compute": payload["compute"]})
