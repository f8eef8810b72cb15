"""Time-bound access grants: taken away when they run out, or earlier on request."""

from __future__ import annotations

import logging

from sqlalchemy import select

from approvals import audit, outbox
from approvals.execution import PROPAGATION_NOTE, spec_of_grant
from approvals.render import short_ref, when
from approvals.tables import GrantRow
from approvals.workflow_base import WorkflowBase
from commands.errors import NotFoundUserError, UserError
from workspaces.errors import WorkspaceError

log = logging.getLogger(__name__)


class GrantKeeper(WorkflowBase):
    def revoke_grant(self, grant_id: int, actor: str, *, reason: str) -> GrantRow:
        """Take a grant away: claim it (active -> revoking), delete in Azure, mark revoked.

        A grant already gone in Azure counts as revoked; if Azure fails, the grant goes back
        to `active` with the error kept, so the next sweep tries again.
        """
        from sqlalchemy import update

        self.refuse_secrets(actor, reason)
        now = self.clock.now()
        with self.store.transaction() as session:
            grant = session.get(GrantRow, grant_id)
            if grant is None:
                raise NotFoundUserError(
                    f"There is no grant {short_ref(grant_id)}.", example="/aml access list"
                )
            claimed = session.execute(
                update(GrantRow)
                .where(GrantRow.id == grant_id, GrantRow.status == "active")
                .values(status="revoking")
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                raise UserError(
                    f"Grant {short_ref(grant_id)} is already {grant.status}"
                    + (f" (since {when(grant.revoked_at)})" if grant.revoked_at else "")
                    + "."
                )
        spec = spec_of_grant(grant, f"amlbot grant #{grant.id}")
        try:
            self.backend_for(grant.workspace).revoke_cluster_access(spec)
        except WorkspaceError as exc:
            with self.store.transaction() as session:
                session.execute(
                    update(GrantRow)
                    .where(GrantRow.id == grant_id)
                    .values(status="active", revoke_error=str(exc)[:1000])
                )
                audit.record(
                    session,
                    at=now,
                    actor=actor,
                    action="access.revoke",
                    outcome="failed",
                    workspace=grant.workspace,
                    target=f"grant {short_ref(grant.id)}",
                    error=str(exc)[:500],
                )
            raise
        with self.store.transaction() as session:
            session.execute(
                update(GrantRow)
                .where(GrantRow.id == grant_id)
                .values(status="revoked", revoked_at=now, revoked_by=actor, revoke_error=None)
            )
            audit.record(
                session,
                at=now,
                actor=actor,
                action="access.revoked",
                outcome="revoked",
                workspace=grant.workspace,
                target=f"grant {short_ref(grant.id)}",
                grantee=grant.grantee,
                cluster=grant.cluster,
                reason=reason,
            )
            outbox.notify_person(
                session,
                grant.grantee,
                f"Your access to `{grant.cluster}` in `{grant.workspace}` (grant "
                f"{short_ref(grant.id)}) was revoked: {reason}. {PROPAGATION_NOTE}",
                now=now,
                request_id=grant.request_id,
            )
            refreshed = session.get(GrantRow, grant_id)
            assert refreshed is not None
            return refreshed

    def revoke_expired_grants(self) -> list[int]:
        """Revoke every grant past its expiry. Safe on several replicas: each grant is
        claimed by one UPDATE, so only one process deletes it."""
        now = self.clock.now()
        with self.store.transaction() as session:
            due = list(
                session.scalars(
                    select(GrantRow.id).where(
                        GrantRow.status == "active", GrantRow.expires_at <= now
                    )
                )
            )
        revoked = []
        for grant_id in due:
            try:
                self.revoke_grant(grant_id, "amlbot", reason="it expired")
                revoked.append(grant_id)
            except UserError:
                continue  # another replica claimed it first
            except WorkspaceError as exc:
                log.warning("revoking expired grant %s failed, will retry: %s", grant_id, exc)
        return revoked
