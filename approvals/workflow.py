"""The life of a request: open, vote, decide, execute, expire; and of a grant: revoke.

Each state change, its audit event and the messages it causes share one transaction.
Calls to the workspace happen between transactions, never inside one, so a slow Azure
call holds no database lock.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from approvals import audit, outbox
from approvals.closing import Closing
from approvals.config import WorkspaceConfig
from approvals.opening import OpenedOnce, origin_of
from approvals.payloads import RequestPayload
from approvals.resumption import Resumption
from approvals.states import RequestStatus
from approvals.tables import RequestRow, VoteRow
from approvals.until_done import WorkBoundGrants
from approvals.wording import short_ref
from shared.errors import UserError

log = logging.getLogger(__name__)


class Workflow(OpenedOnce, Closing, Resumption, WorkBoundGrants):
    """The whole workflow: opening and approving (here); who may decide, closing without
    carrying out, carrying out, resuming and keeping grants (the bases)."""

    # ---- opening ----------------------------------------------------------------------

    def open_request(
        self,
        ws: WorkspaceConfig,
        requester: str,
        payload: RequestPayload,
        summary: str,
        reason: str | None,
        approvals_needed: int,
    ) -> RequestRow:
        self.refuse_secrets(requester, payload, summary, reason)
        now = self.clock.now()

        def create(session: Session) -> RequestRow:
            row = record_request(
                session,
                RequestRow(
                    workspace=ws.name,
                    action=payload.action,
                    requester=requester,
                    payload=payload,
                    summary=summary[:500],
                    reason=reason,
                    status=RequestStatus.PENDING,
                    approvals_needed=approvals_needed,
                    created_at=now,
                    expires_at=now + ws.policy.request_ttl,
                    version=1,
                ),
                summary,
                reason=reason,
            )
            outbox.enqueue(session, outbox.REQUEST_OPENED, {"request_id": row.id}, now=now)
            return row

        return self.open_once(payload.action, create)

    def run_now(
        self,
        ws: WorkspaceConfig,
        requester: str,
        payload: RequestPayload,
        summary: str,
        why: str,
        rule: str | None = None,
    ) -> RequestRow:
        """Record an action policy lets run without a lead, then carry it out. `rule`: the
        policy rule that auto-approved it, audited as the decision it is."""
        self.refuse_secrets(requester, payload, summary, why)
        now = self.clock.now()

        def create(session: Session) -> RequestRow:
            row = record_request(
                session,
                RequestRow(
                    workspace=ws.name,
                    action=payload.action,
                    requester=requester,
                    payload=payload,
                    summary=summary[:500],
                    status=RequestStatus.APPROVED,
                    approvals_needed=0,
                    created_at=now,
                    decided_by="policy",
                    decided_at=now,
                    version=1,
                    **self.new_lease(now),
                ),
                summary,
                policy=why,
            )
            if rule is not None:
                audit.record(
                    session,
                    at=now,
                    actor="policy",
                    action=f"{payload.action}.approved",
                    outcome="approved",
                    workspace=ws.name,
                    target=short_ref(row.id),
                    rule=rule,
                    why=why,
                )
            return row

        # Opened before by the same delivery: carried out then, or (if that handling died
        # between the two) now; `execute` acts only on a request still `approved`.
        return self.execute(self.open_once(payload.action, create).id)

    # ---- deciding ---------------------------------------------------------------------

    def find(self, request_id: int) -> RequestRow:
        """The request, in a transaction of its own; `NotFoundUserError` if there is none."""
        with self.store.transaction() as session:
            return self.load(session, request_id)

    def get(self, request_id: int) -> RequestRow | None:
        """The request, in a transaction of its own, or None."""
        with self.store.transaction() as session:
            return session.get(RequestRow, request_id)

    def with_votes(self, request_id: int) -> tuple[RequestRow | None, list[str]]:
        """A request and who approved it so far, in order; (None, []) if there is none."""
        with self.store.transaction() as session:
            request = session.get(RequestRow, request_id)
            if request is None:
                return None, []
            votes = session.scalars(
                select(VoteRow.approver)
                .where(VoteRow.request_id == request_id)
                .order_by(VoteRow.id)
            )
            return request, list(votes)

    def _already_approved(self, row: RequestRow, actor: str) -> UserError | None:
        """What a lead who approved before hears on approving again: where it stands now."""
        with self.store.transaction() as session:
            votes = list(
                session.scalars(select(VoteRow.approver).where(VoteRow.request_id == row.id))
            )
        if actor not in votes:
            return None
        ref = short_ref(row.id)
        status = RequestStatus(row.status)
        if status == RequestStatus.PENDING:
            return UserError(
                f"You already approved {ref} ({len(votes)} of {row.approvals_needed}); "
                f"it needs another team lead."
            )
        if status in {RequestStatus.APPROVED, RequestStatus.EXECUTING}:
            return UserError(f"You already approved {ref}; it is being carried out now.")
        if status == RequestStatus.SUCCEEDED:
            return UserError(
                f"You already approved {ref}; it has been carried out. {self.outcome_text(row)}"
            )
        if status == RequestStatus.FAILED:
            return UserError(f"You already approved {ref}; carrying it out failed: {row.error}")
        return None

    def approve(self, request_id: int, actor: str) -> tuple[RequestRow, str]:
        """Record a lead's approval; execute once enough leads approved. Returns a message."""
        if self.expire_if_due(request_id):
            raise UserError(f"Request {short_ref(request_id)} had expired; nothing was done.")
        with self.store.transaction() as session:
            row = self.load(session, request_id)
        self._refuse_decision(row, actor, "approve")
        if row.status in (RequestStatus.APPROVED, RequestStatus.EXECUTING):
            return self.approve_in_flight(row, actor)
        if row.status != RequestStatus.PENDING:
            raise self._already_approved(row, actor) or self._not_pending(row)
        now = self.clock.now()
        # The vote, the count and the transition share one transaction: a process killed
        # between a vote and the approval it completes would otherwise leave a request
        # pending for good, its lead's retried click finding the vote already cast.
        try:
            with self.store.transaction() as session:
                session.add(VoteRow(request_id=row.id, approver=actor, at=now))
                session.flush()
                recorded = self._count_votes(session, row, actor, now)
        except IntegrityError:
            # A double click: the first click may have carried the request out since we
            # read it, so the answer describes the request as it is now.
            with self.store.transaction() as session:
                current = self.load(session, row.id)
            raise self._already_approved(current, actor) or self._not_pending(current) from None
        if recorded is not None:
            return row, recorded
        # Approved and committed: carried out outside any transaction (Azure is slow).
        done = self.execute(row.id)
        return done, f"Approved {short_ref(row.id)}. {self.outcome_text(done)}"

    def _count_votes(
        self, session: Session, row: RequestRow, actor: str, now: datetime
    ) -> str | None:
        """After `actor`'s vote, in its transaction: the reply when more votes are needed,
        or None once the request moved to `approved`."""
        votes = (
            session.scalar(
                select(func.count()).select_from(VoteRow).where(VoteRow.request_id == row.id)
            )
            or 0
        )
        if votes < row.approvals_needed:
            audit.record(
                session,
                at=now,
                actor=actor,
                action=f"{row.action}.approval",
                outcome="recorded",
                workspace=row.workspace,
                target=short_ref(row.id),
                votes=votes,
                needed=row.approvals_needed,
            )
            # The card redraws only for a newer version: this vote changes what it shows.
            session.execute(
                update(RequestRow)
                .where(RequestRow.id == row.id)
                .values(version=RequestRow.version + 1)
                .execution_options(synchronize_session=False)
            )
            outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
            return (
                f"Your approval of {short_ref(row.id)} is recorded "
                f"({votes} of {row.approvals_needed}); another team lead must approve too."
            )
        self._leave_pending(
            session,
            row.id,
            RequestStatus.APPROVED,
            decided_by=actor,
            decided_at=now,
            **self.new_lease(now),
        )
        audit.record(
            session,
            at=now,
            actor=actor,
            action=f"{row.action}.approved",
            outcome="approved",
            workspace=row.workspace,
            target=short_ref(row.id),
        )
        return None


def record_request(session: Session, row: RequestRow, summary: str, **details: Any) -> RequestRow:
    """Add a new request and its "requested" audit event, in the caller's transaction. A
    request opened while a delivery is handled records it as its origin."""
    if row.origin is None:
        row.origin = origin_of(row.action)
    session.add(row)
    session.flush()
    audit.record(
        session,
        at=row.created_at,
        actor=row.requester,
        action=f"{row.action}.requested",
        outcome=row.status,
        workspace=row.workspace,
        target=short_ref(row.id),
        summary=summary,
        **details,
    )
    return row
