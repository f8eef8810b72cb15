"""`datastore`: an identity-based datastore registered in the workspace (no secret)."""

from __future__ import annotations

from approvals.actions.base import ActionHandler, Carried, payload_as
from approvals.config import WorkspaceConfig
from approvals.payloads import DatastorePayload
from approvals.tables import RequestRow
from approvals.wording import short_ref
from approvals.workflow_base import WorkflowBase
from shared.errors import ConflictError
from workspaces.types import DatastoreSpec


class DatastoreRegistration(ActionHandler):
    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        payload = payload_as(row, DatastorePayload)
        backend = flow.backend_for(ws.name)
        tags = {"amlbot-request": str(row.id), "amlbot-requester": row.requester}
        try:
            info = backend.register_datastore(
                DatastoreSpec(
                    name=payload.name,
                    kind=payload.store_kind,
                    account=payload.account,
                    container=payload.container,
                    description=payload.description,
                    tags=tags,
                )
            )
        except ConflictError:
            # Resumed after the first attempt registered it: the datastore carries this
            # request's tag, so it is ours, and registering it is done.
            ours = [
                d
                for d in backend.list_datastores()
                if d.name == payload.name and d.tags.items() >= tags.items()
            ]
            if not ours:
                raise
            info = ours[0]
        return Carried({"datastore": info.name})

    def done_text(self, row: RequestRow) -> str:
        return (
            f"Request {short_ref(row.id)} done: datastore `{(row.result or {}).get('datastore')}` "
            f"is registered (identity-based, no secret stored)."
        )
