"""Carrying out an approved request exactly once, through its action's handler.

Calls to the workspace happen between transactions, never inside one, so a slow Azure
call holds no database lock. What each action does is its handler's (approvals/actions/,
one module per action, in the table of `actions/handlers.py`); names of what is made in
Azure derive from the request, so a retry cannot make a second role assignment or job. The
process carrying a request out holds a lease on it (approvals/leases.py); when the lease
runs out, a sweep resumes the request (approvals/resumption.py).

    approved -(lease taken)-> executing -(heartbeat)-> succeeded | failed   (outcome told once)
                                  |  Azure failed for a passing reason: short lease, retried
                                  |  process died: lease runs out, a sweep claims and resumes
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from approvals import audit, leases, outbox
from approvals.actions.base import Carried
from approvals.actions.handlers import HANDLERS, handler_for
from approvals.states import RequestStatus, transition
from approvals.tables import RequestRow
from approvals.wording import short_ref
from approvals.workflow_base import WorkflowBase
from shared.errors import AmlbotError

log = logging.getLogger(__name__)


class Execution(WorkflowBase):
    # How long a lease lasts, how often (wall-clock seconds) the heartbeat renews it (None:
    # a third of the lease), and how many carry-outs of one request before giving up.
    lease_length: timedelta = leases.LEASE
    heartbeat_every: float | None = None
    max_attempts: int = leases.MAX_ATTEMPTS

    @property
    def holder(self) -> str:
        return leases.process_holder()

    def new_lease(self, now: datetime) -> dict[str, Any]:
        """The lease columns for a request this process is about to put in flight."""
        return leases.taken(now, self.holder, self.lease_length)

    def execute(self, request_id: int) -> RequestRow:
        """Carry out an approved request exactly once: only the caller that moves it to
        `executing` acts; everyone else sees the state it is in."""
        now = self.clock.now()
        with self.store.transaction() as session:
            row = self.load(session, request_id)
            won = transition(
                session,
                row.id,
                RequestStatus.APPROVED,
                RequestStatus.EXECUTING,
                attempts=RequestRow.attempts + 1,
                result=self._plan(row, now),
                **self.new_lease(now),
            )
            if won:
                outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
        with self.store.transaction() as session:
            row = self.load(session, request_id)
        if not won:
            return row
        return self._attempt(row)

    def _attempt(self, row: RequestRow) -> RequestRow:
        """One carry-out of a request this process holds in `executing`; ends it unless
        Azure failed for a passing reason and attempts remain."""
        ws = self.config.workspaces[row.workspace]
        heartbeat = leases.Heartbeat(
            leases.request_renewal(self.store, self.clock, row.id, self.holder, self.lease_length),
            self.heartbeat_every or self.lease_length.total_seconds() / 3,
            f"request {row.id}",
        )
        try:
            with heartbeat:
                carried = handler_for(row.action).carry_out(self, ws, row)
        except AmlbotError as exc:
            if exc.retryable and row.attempts < self.max_attempts:
                return self._retry_later(row, exc.render())
            return self._finish_failed(row, exc.render())
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("executing request %s failed (error id %s)", row.id, error_id)
            return self._finish_failed(
                row, f"an unexpected error (error id {error_id}); quote it to a team lead"
            )
        return self._finish_succeeded(row, carried)

    def _retry_later(self, row: RequestRow, error: str) -> RequestRow:
        """Leave the request `executing` with a short lease: when it runs out, a sweep
        resumes it (one more attempt). The error is kept so the state can be explained."""
        now = self.clock.now()
        wait = self.lease_length * row.attempts
        log.warning(
            "request %s: attempt %s of %s failed for a passing reason; retried in %ss: %s",
            row.id,
            row.attempts,
            self.max_attempts,
            wait.total_seconds(),
            error,
        )
        with self.store.transaction() as session:
            session.execute(
                update(RequestRow)
                .where(
                    RequestRow.id == row.id,
                    RequestRow.status == RequestStatus.EXECUTING,
                    RequestRow.lease_holder == self.holder[:64],
                )
                .values(lease_until=now + wait, error=error[:2000])
                .execution_options(synchronize_session=False)
            )
            return self.load(session, row.id)

    def _plan(self, row: RequestRow, now: datetime) -> dict[str, Any] | None:
        """What a carry-out must decide once and every retry must repeat (its handler says)."""
        handler = HANDLERS.get(row.action)
        return handler.plan(row, now) if handler is not None else row.result

    def _finish_succeeded(
        self,
        row: RequestRow,
        carried: Carried,
    ) -> RequestRow:
        now = self.clock.now()
        with self.store.transaction() as session:
            if not transition(
                session,
                row.id,
                RequestStatus.EXECUTING,
                RequestStatus.SUCCEEDED,
                result=carried.result,
                error=None,
                finished_at=now,
                **leases.released(),
            ):
                # Another process finished it first (it resumed this one, thinking it dead):
                # that one recorded the outcome and told everyone.
                return self.load(session, row.id)
            if carried.follow_up is not None:
                carried.follow_up(session, now)
            audit.record(
                session,
                at=now,
                actor="amlbot",
                action=f"{row.action}.executed",
                outcome="succeeded",
                workspace=row.workspace,
                target=short_ref(row.id),
                **{k: v for k, v in carried.result.items() if k != "note"},
            )
            done = self.load(session, row.id)
            self._announce(session, done, now)
            return done

    def _finish_failed(self, row: RequestRow, error: str) -> RequestRow:
        now = self.clock.now()
        with self.store.transaction() as session:
            if not transition(
                session,
                row.id,
                RequestStatus.EXECUTING,
                RequestStatus.FAILED,
                error=error[:2000],
                finished_at=now,
                **leases.released(),
            ):
                return self.load(session, row.id)
            audit.record(
                session,
                at=now,
                actor="amlbot",
                action=f"{row.action}.executed",
                outcome="failed",
                workspace=row.workspace,
                target=short_ref(row.id),
                error=error[:500],
            )
            done = self.load(session, row.id)
            self._announce(session, done, now)
            return done

    def _announce(self, session: Session, done: RequestRow, now: datetime) -> None:
        """The outcome, queued in the transaction that ended the request (so exactly once).
        A lead decided it: a card exists and the asker waits. Policy ran it at once: the
        asker read the outcome in the reply, unless the first attempt did not finish it
        (interrupted, or retried later) or the command was answered again while it was in
        flight (`owe_outcome`), so a reply promised to tell them."""
        if done.approvals_needed:
            outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": done.id}, now=now)
        if done.approvals_needed or done.attempts > 1 or done.outcome_owed:
            outbox.notify_person(
                session, done.requester, self.outcome_text(done), now=now, request_id=done.id
            )

    def owe_outcome(self, request_id: int) -> RequestRow:
        """Promise the requester the outcome of a request in flight, and return it as it
        now stands. Compare-and-set on the status: against the transaction that ends the
        request, either the promise lands first (and that transaction reads it) or the
        request has ended (and the caller answers with its outcome)."""
        with self.store.transaction() as session:
            session.execute(
                update(RequestRow)
                .where(RequestRow.id == request_id, RequestRow.status.in_(leases.IN_FLIGHT))
                .values(outcome_owed=True)
                .execution_options(synchronize_session=False)
            )
            return self.load(session, request_id)

    def outcome_text(self, row: RequestRow) -> str:
        ref = short_ref(row.id)
        if row.status == RequestStatus.FAILED:
            return f"Request {ref} ({row.summary}) failed: {row.error}"
        if row.status in leases.IN_FLIGHT:
            tried = (
                f" The last try failed ({row.error}); it is retried shortly." if row.error else ""
            )
            return (
                f"Request {ref} is being carried out.{tried} If it is interrupted, the bot "
                f"resumes it automatically; {row.requester} hears the outcome."
            )
        if row.status != RequestStatus.SUCCEEDED:
            return f"Request {ref} is {row.status}."
        handler = HANDLERS.get(row.action)
        if handler is not None:
            return handler.done_text(row)
        return f"Request {ref} done: {row.summary}."
