"""What the command handlers share: the collaborators and the lookups every handler uses."""

from __future__ import annotations

from sqlalchemy import select

from approvals.break_glass import BreakGlass
from approvals.config import AppConfig, WorkspaceConfig
from approvals.directory import Directory
from approvals.idle.spend import idle_spend_between
from approvals.spend import IdleSpend
from approvals.states import RequestStatus
from approvals.store import Store
from approvals.tables import GrantRow, GrantStatus, RequestRow
from approvals.workflow_base import BackendFor
from commands import models as m
from workspaces.clock import Clock


class ServiceBase:
    def __init__(
        self,
        config: AppConfig,
        store: Store,
        backend_for: BackendFor,
        clock: Clock,
        directory: Directory | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.backend_for = backend_for
        self.clock = clock
        self.directory = directory or Directory(config)
        self.workflow = BreakGlass(config, self.directory, store, backend_for, clock)
        # What idle compute cost, counted in the month's spend.
        self.idle_spend: IdleSpend | None = idle_spend_between

    def _workspace(self, person: str, command: m.Command, channel: str | None) -> WorkspaceConfig:
        return self.directory.resolve_workspace(person, command.workspace, channel)

    def _must_name_workspace(self, person: str, command: m.Command) -> bool:
        """Whether a command we suggest must say `--workspace` to reach the same one:
        the person named it, or belongs to several (a DM would not know which)."""
        return command.workspace is not None or len(self.directory.workspaces_of(person)) > 1

    def _load_request(self, request_id: int) -> RequestRow:
        with self.store.transaction() as session:
            return self.workflow.load(session, request_id)

    def _active_grant(self, person: str, ws: str, cluster: str) -> GrantRow | None:
        now = self.clock.now()
        with self.store.transaction() as session:
            return session.scalars(
                select(GrantRow).where(
                    GrantRow.grantee == person,
                    GrantRow.workspace == ws,
                    GrantRow.cluster == cluster,
                    GrantRow.status == GrantStatus.ACTIVE,
                    GrantRow.expires_at > now,
                )
            ).first()

    def _pending_like(self, person: str, ws: str, action: str, key: str, value: str) -> int | None:
        with self.store.transaction() as session:
            rows = session.scalars(
                select(RequestRow).where(
                    RequestRow.requester == person,
                    RequestRow.workspace == ws,
                    RequestRow.action == action,
                    RequestRow.status == RequestStatus.PENDING,
                )
            )
            return next((row.id for row in rows if row.payload.get(key) == value), None)
