"""What every part of the request workflow shares: its collaborators and how to load a request."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from approvals.config import AppConfig
from approvals.directory import Directory
from approvals.render import short_ref
from approvals.store import Store
from approvals.tables import RequestRow
from commands.errors import NotFoundUserError
from workspaces.clock import Clock
from workspaces.port import WorkspaceBackend

log = logging.getLogger(__name__)

BackendFor = Callable[[str], WorkspaceBackend]


class WorkflowBase:
    def __init__(
        self,
        config: AppConfig,
        directory: Directory,
        store: Store,
        backend_for: BackendFor,
        clock: Clock,
    ) -> None:
        self.config = config
        self.directory = directory
        self.store = store
        self.backend_for = backend_for
        self.clock = clock

    def load(self, session: Session, request_id: int) -> RequestRow:
        row = session.get(RequestRow, request_id)
        if row is None:
            raise NotFoundUserError(
                f"There is no request {short_ref(request_id)}.", example="/aml request list"
            )
        return row
