"""What every part of the request workflow shares: its collaborators and how to load a request."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from approvals import audit
from approvals.config import AppConfig
from approvals.directory import Directory
from approvals.store import Store
from approvals.tables import RequestRow
from approvals.wording import short_ref
from shared.errors import NotFoundUserError, secret_refusal
from shared.secrets import find_secret_in
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

    def refuse_secrets(self, actor: str, *values: object) -> None:
        """The one secret gate of the core: every command `AmlService.run` is given, and
        every free text handed to the workflow directly, passes here before anything is
        stored, sent or done. A secret anywhere in `values` is refused with
        `SecretRefusedError`; the refusal is audited by kind, never with the text."""
        kind = find_secret_in(values)
        if kind is None:
            return
        self.audit_secret_refusal(actor, kind)
        raise secret_refusal(kind)

    def audit_secret_refusal(self, actor: str, kind: str) -> None:
        with self.store.transaction() as session:
            audit.record(
                session,
                at=self.clock.now(),
                actor=actor,
                action="command.refused",
                outcome="secret",
                detail_kind=kind,
            )
