"""`review`: a lead's verdict on a break-glass use (approvals/break_glass.py opens it)."""

from __future__ import annotations

from approvals.actions.base import ActionHandler, Carried, payload_as
from approvals.config import WorkspaceConfig
from approvals.payloads import ReviewPayload
from approvals.tables import RequestRow
from approvals.wording import short_ref
from approvals.workflow_base import WorkflowBase


class BreakGlassReview(ActionHandler):
    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        # An approved review changes nothing in Azure: it records the verdict. (A denied
        # one ends the access: `BreakGlass.deny_review`.)
        reviews = payload_as(row, ReviewPayload).reviews
        return Carried({"reviewed": reviews, "verdict": "justified"})

    def done_text(self, row: RequestRow) -> str:
        return (
            f"Review {short_ref(row.id)} done: {row.decided_by} found the break-glass use "
            f"{short_ref(payload_as(row, ReviewPayload).reviews)} by {row.requester} justified."
        )
