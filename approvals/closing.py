"""A pending request closed without being carried out: denied by a lead, cancelled by
its requester, or expired because nobody decided it in time.

Each close is one transition from `pending`, its audit event, the card's refresh and the
requester's notice, in one transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import audit, outbox
from approvals.decision_rights import DecisionRights, not_yours
from approvals.states import RequestStatus, transition
from approvals.tables import RequestRow
from approvals.wording import short_ref, status_line
from commands.durations import format_duration
from shared.errors import PermissionRefusedError, UserError


class Closing(DecisionRights):
    def _not_pending(self, row: RequestRow) -> UserError:
        return UserError(f"Request {short_ref(row.id)} is no longer pending: {status_line(row)}.")

    def _leave_pending(
        self, session: Session, request_id: int, target: RequestStatus, **values: Any
    ) -> None:
        """Move a request out of `pending` (compare-and-set), or, when another decision got
        there first, undo this transaction and refuse with the request as it now stands."""
        if not transition(session, request_id, RequestStatus.PENDING, target, **values):
            session.rollback()
            with self.store.transaction() as again:
                raise self._not_pending(self.load(again, request_id))

    def expire_if_due(self, request_id: int) -> bool:
        """Expire a pending request whose time ran out. True if this call expired it."""
        now = self.clock.now()
        with self.store.transaction() as session:
            row = self.load(session, request_id)
            if row.status != RequestStatus.PENDING or row.expires_at is None:
                return False
            if row.expires_at > now:
                return False
            if not transition(
                session, row.id, RequestStatus.PENDING, RequestStatus.EXPIRED, finished_at=now
            ):
                return False
            audit.record(
                session,
                at=now,
                actor="amlbot",
                action=f"{row.action}.expired",
                outcome="expired",
                workspace=row.workspace,
                target=short_ref(row.id),
            )
            outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
            outbox.notify_person(
                session,
                row.requester,
                f"Your request {short_ref(row.id)} ({row.summary}) expired: no team lead "
                f"decided it within {format_duration(now - row.created_at)}. Ask again if "
                f"you still need it.",
                now=now,
                request_id=row.id,
            )
            return True

    def deny(self, request_id: int, actor: str, reason: str) -> RequestRow:
        # The reason lands in the request, the audit trail, the card, the thread and a DM.
        self.refuse_secrets(actor, reason)
        with self.store.transaction() as session:
            row = self.load(session, request_id)
        self._refuse_decision(row, actor, "deny")
        notice = f"{actor} denied your request {short_ref(row.id)} ({row.summary}): {reason}"
        return self._close_pending(
            row, actor, RequestStatus.DENIED, notice, decided_by=actor, deny_reason=reason
        )

    def cancel(self, request_id: int, actor: str) -> RequestRow:
        with self.store.transaction() as session:
            row = self.load(session, request_id)
        if row.requester != actor and not self.may_see(actor, row):
            raise PermissionRefusedError(not_yours(row.id))
        if row.requester != actor:
            raise PermissionRefusedError(
                f"Only {row.requester}, who asked, can cancel {short_ref(row.id)}."
                + (
                    f' As a lead you can deny it: `/aml deny {row.id} --reason "..."`'
                    if self.directory.is_lead(actor, row.workspace)
                    else ""
                )
            )
        return self._close_pending(row, actor, RequestStatus.CANCELLED, None)

    def _close_pending(
        self,
        row: RequestRow,
        actor: str,
        target: RequestStatus,
        notice: str | None,
        **changes: Any,
    ) -> RequestRow:
        """End a pending request without executing it: one transition, its audit event,
        the card's refresh and the requester's notice, in one transaction."""
        if row.status != RequestStatus.PENDING:
            raise self._not_pending(row)
        now = self.clock.now()
        with self.store.transaction() as session:
            self._leave_pending(session, row.id, target, decided_at=now, finished_at=now, **changes)
            audit.record(
                session,
                at=now,
                actor=actor,
                action=f"{row.action}.{target.value}",
                outcome=target.value,
                workspace=row.workspace,
                target=short_ref(row.id),
                **({"reason": changes["deny_reason"]} if "deny_reason" in changes else {}),
            )
            outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
            if notice is not None:
                outbox.notify_person(session, row.requester, notice, now=now, request_id=row.id)
        with self.store.transaction() as session:
            return self.load(session, row.id)

    def expire_pending_requests(self) -> list[int]:
        now = self.clock.now()
        with self.store.transaction() as session:
            due = list(
                session.scalars(
                    select(RequestRow.id).where(
                        RequestRow.status == RequestStatus.PENDING,
                        RequestRow.expires_at <= now,
                    )
                )
            )
        return [request_id for request_id in due if self.expire_if_due(request_id)]
