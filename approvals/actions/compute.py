"""`compute`: one setting of a compute changed (asked for, or from the idle digest)."""

from __future__ import annotations

from approvals.actions.base import ActionHandler, Carried, payload_as, required
from approvals.config import WorkspaceConfig
from approvals.payloads import ComputePayload
from approvals.tables import RequestRow
from approvals.workflow_base import WorkflowBase


class ComputeChange(ActionHandler):
    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        payload = payload_as(row, ComputePayload)
        backend = flow.backend_for(ws.name)
        compute, operation = payload.compute, payload.operation
        if operation == "stop_instance":
            backend.stop_instance(compute)
        elif operation == "set_min_nodes":
            backend.set_cluster_min_nodes(compute, required(row, payload.min_nodes, "min_nodes"))
        elif operation == "set_idle_time":
            backend.set_cluster_idle_time(
                compute, required(row, payload.idle_seconds, "idle_seconds")
            )
        else:
            backend.set_instance_idle_shutdown(
                compute, required(row, payload.idle_shutdown_minutes, "idle_shutdown_minutes")
            )
        return Carried({"operation": operation, "compute": compute})
