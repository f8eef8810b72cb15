"""Time-bound access grants: taken away when they run out, or earlier on request.

A revocation is claimed before Azure is called (`active` -> `revoking`, with a lease), and
finished by a compare-and-set (`revoking` -> `revoked`) that queues the holder's notice in
the same transaction, so the holder is told exactly once. A claim whose lease ran out (its
process died mid-call, or Azure failed) is taken over by the next sweep round or by
`/aml access revoke`: deleting the assignment again is harmless (already gone = revoked),
so nothing stays `revoking` with expired access left in Azure.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from approvals import audit, outbox
from approvals.actions.access import PROPAGATION_NOTE, spec_of_grant
from approvals.tables import GrantRow, GrantStatus, RequestRow
from approvals.wording import short_ref, when
from approvals.workflow_base import WorkflowBase
from shared.errors import NotFoundUserError, TransientError, UserError, WorkspaceError

log = logging.getLogger(__name__)

BOT = "amlbot"
# A claim older than this is taken to be abandoned (its process died) and the sweep deletes
# again: short, so expired access is gone within about a minute of a crash. A slow Azure
# call outliving it costs nothing: a second delete finds the assignment gone (404 counts as
# revoked) and only one of the two finishers records and tells (compare-and-set).
REVOKE_LEASE = timedelta(seconds=45)
# After Azure failed: short, so the next sweep round (every 15 s) tries again.
RETRY_LEASE = timedelta(seconds=10)
_PROCESS = f"{socket.gethostname()}-{os.getpid()}"


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Active, or being revoked by a claim whose lease ran out (or a claim from before
    leases existed)."""
    return or_(
        GrantRow.status == GrantStatus.ACTIVE,
        and_(
            GrantRow.status == GrantStatus.REVOKING,
            or_(GrantRow.revoke_lease_until.is_(None), GrantRow.revoke_lease_until <= now),
        ),
    )


def _reason_of(grant: GrantRow) -> str:
    """Why a revocation taken over from another claim was asked for, from who asked."""
    if grant.revoked_by in (None, BOT):
        return "it expired"
    if grant.revoked_by == grant.grantee:
        return "given up by the grantee"
    return f"revoked by {grant.revoked_by}"


class GrantKeeper(WorkflowBase):
    def revoke_grant(
        self, grant_id: int, actor: str, *, reason: str, end_reason: str = "revoked"
    ) -> GrantRow:
        """Take a grant away: claim it, delete the assignment in Azure, mark it revoked.

        A grant stuck in `revoking` past its lease is taken over (with the reason of whoever
        asked first). If Azure fails, the grant stays `revoking` with the error and a short
        lease, so the next sweep round tries again; the error is raised.
        """
        self.refuse_secrets(actor, reason)
        grant, holder, reason = self._claim(grant_id, actor, reason, end_reason)
        spec = spec_of_grant(grant, f"amlbot grant #{grant.id}")
        backend = self.backend_for(grant.workspace)
        try:
            backend.revoke_cluster_access(spec)
            # Reported done only once Azure is read back without it: a delete Azure
            # acknowledged can still leave the assignment in place.
            if grant.mode == "rbac" and backend.access_assignment_exists(spec):
                raise TransientError(
                    f"Azure still lists the role assignment of grant {short_ref(grant.id)} "
                    f"after deleting it; the bot deletes it again and reads it back until "
                    f"it is gone."
                )
        except WorkspaceError as exc:
            self._failed(grant, holder, actor, exc)
            raise
        return self._revoked(grant, reason)

    def _claim(
        self, grant_id: int, actor: str, reason: str, end_reason: str
    ) -> tuple[GrantRow, str, str]:
        now = self.clock.now()
        holder = f"{actor}@{_PROCESS}:{uuid.uuid4().hex[:8]}"
        with self.store.transaction() as session:
            grant = session.get(GrantRow, grant_id)
            if grant is None:
                raise NotFoundUserError(
                    f"There is no grant {short_ref(grant_id)}.", example="/aml access list"
                )
            taking_over = grant.status == GrantStatus.REVOKING
            claimed = session.execute(
                update(GrantRow)
                .where(GrantRow.id == grant_id, _claimable(now))
                .values(
                    status=GrantStatus.REVOKING,
                    revoking_by=holder,
                    revoke_lease_until=now + REVOKE_LEASE,
                    # Who asked first: kept when a stuck revocation is taken over.
                    revoked_by=GrantRow.revoked_by if taking_over else actor,
                    end_reason=GrantRow.end_reason if taking_over else end_reason,
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                raise self._not_claimable(grant)
            session.refresh(grant)
        if taking_over:
            log.warning(
                "grant %s was left revoking by %s; %s takes the revocation over",
                grant_id,
                grant.revoking_by,
                actor,
            )
            reason = _reason_of(grant)
        return grant, holder, reason

    @staticmethod
    def _not_claimable(grant: GrantRow) -> UserError:
        ref = short_ref(grant.id)
        if grant.status == GrantStatus.REVOKING and grant.revoke_lease_until is not None:
            return UserError(
                f"Grant {ref} is being revoked right now; if that does not finish, it can be "
                f"taken over after {when(grant.revoke_lease_until)}."
            )
        return UserError(
            f"Grant {ref} is already {grant.status}"
            + (f" (since {when(grant.revoked_at)})" if grant.revoked_at else "")
            + "."
        )

    def _failed(self, grant: GrantRow, holder: str, actor: str, exc: WorkspaceError) -> None:
        now = self.clock.now()
        with self.store.transaction() as session:
            # Only while the claim is still ours: a taker-over's state is not overwritten.
            session.execute(
                update(GrantRow)
                .where(
                    GrantRow.id == grant.id,
                    GrantRow.status == GrantStatus.REVOKING,
                    GrantRow.revoking_by == holder,
                )
                .values(revoke_error=str(exc)[:1000], revoke_lease_until=now + RETRY_LEASE)
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

    def _revoked(self, grant: GrantRow, reason: str) -> GrantRow:
        now = self.clock.now()
        with self.store.transaction() as session:
            # One caller moves it to `revoked` and queues the notice; a second one that also
            # deleted the (already gone) assignment finds it done and tells no one.
            done = session.execute(
                update(GrantRow)
                .where(GrantRow.id == grant.id, GrantRow.status == GrantStatus.REVOKING)
                .values(
                    status=GrantStatus.REVOKED,
                    revoked_at=now,
                    revoke_error=None,
                    revoking_by=None,
                    revoke_lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(done, "rowcount", 0) == 1:
                audit.record(
                    session,
                    at=now,
                    actor=grant.revoked_by or BOT,
                    action="access.revoked",
                    outcome="revoked",
                    workspace=grant.workspace,
                    target=f"grant {short_ref(grant.id)}",
                    grantee=grant.grantee,
                    cluster=grant.cluster,
                    reason=reason,
                    end_reason=grant.end_reason,
                )
                outbox.notify_person(
                    session,
                    grant.grantee,
                    f"Your access to `{grant.cluster}` in `{grant.workspace}` (grant "
                    f"{short_ref(grant.id)}) was revoked: {reason}. {PROPAGATION_NOTE}",
                    now=now,
                    request_id=grant.request_id,
                    dedupe_key=f"grant-revoked:{grant.id}",
                )
                _show_end_on_card(session, grant, reason, now)
            refreshed = session.get(GrantRow, grant.id, populate_existing=True)
            assert refreshed is not None
            return refreshed

    def revoke_expired_grants(self) -> list[int]:
        """Revoke every grant past its expiry, and finish every revocation whose claim ran
        out. Safe on several replicas: each grant is claimed by one UPDATE."""
        now = self.clock.now()
        with self.store.transaction() as session:
            due = list(
                session.scalars(
                    select(GrantRow.id)
                    .where(
                        or_(
                            and_(GrantRow.status == GrantStatus.ACTIVE, GrantRow.expires_at <= now),
                            and_(GrantRow.status == GrantStatus.REVOKING, _claimable(now)),
                        )
                    )
                    .order_by(GrantRow.id)
                )
            )
            limits = {
                grant_id: until_done
                for grant_id, until_done in session.execute(
                    select(GrantRow.id, GrantRow.until_done).where(GrantRow.id.in_(due))
                )
            }
        revoked = []
        for grant_id in due:
            if limits.get(grant_id):
                reason = "its time limit was reached before your work ended"
                end_reason = "time_limit"
            else:
                reason, end_reason = "it expired", "expired"
            try:
                self.revoke_grant(grant_id, BOT, reason=reason, end_reason=end_reason)
                revoked.append(grant_id)
            except UserError:
                continue  # another replica claimed it first
            except WorkspaceError as exc:
                log.warning("revoking grant %s failed, will retry: %s", grant_id, exc)
        return revoked


def _show_end_on_card(session: Session, grant: GrantRow, reason: str, now: datetime) -> None:
    """The request card says how the access ended: its result gains `access_ended`, and the
    newer version redraws every copy of the card."""
    request = session.get(RequestRow, grant.request_id)
    if request is None:
        return
    result = dict(request.result or {})
    result["access_ended"] = {
        "at": now.isoformat(),
        "why": grant.end_reason or "revoked",
        "reason": reason,
        "grant_id": grant.id,
    }
    session.execute(
        update(RequestRow)
        .where(RequestRow.id == request.id)
        .values(result=result, version=RequestRow.version + 1)
        .execution_options(synchronize_session=False)
    )
    outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": request.id}, now=now)
