"""Resuming what a process left in flight: a request whose lease ran out (its process died
between two transactions, or before Azure answered) is claimed by compare-and-set, so one
replica resumes it, and carried on from where it stopped (approvals/execution.py).
"""

from __future__ import annotations

import logging

from approvals import audit, leases
from approvals.execution import Execution
from approvals.states import RequestStatus
from approvals.tables import RequestRow
from approvals.wording import short_ref
from shared.errors import UserError

log = logging.getLogger(__name__)


class Resumption(Execution):
    def resume_stalled(self) -> list[int]:
        """Resume every request in flight whose lease ran out: its process died between
        two transactions (or before Azure answered). The sweeps call this every round, on
        every replica; each request is claimed by compare-and-set, so one replica resumes it."""
        with self.store.transaction() as session:
            stalled = leases.stalled(session, self.clock.now())
        return [request_id for request_id in stalled if self.resume(request_id) is not None]

    def resume(self, request_id: int, by: str = "amlbot") -> RequestRow | None:
        """Claim a request whose lease ran out and carry it on from where it stopped. None if
        it is not stalled (its holder is alive, another replica claimed it, or it ended)."""
        now = self.clock.now()
        with self.store.transaction() as session:
            row = self.load(session, request_id)
            if row.status not in leases.IN_FLIGHT:
                return None
            status = row.status
            if not leases.claim_stalled(
                session, row.id, status, now, self.holder, self.lease_length
            ):
                return None
            audit.record(
                session,
                at=now,
                actor=by,
                action=f"{row.action}.resumed",
                outcome=status.value,
                workspace=row.workspace,
                target=short_ref(row.id),
                left_by=row.lease_holder,
            )
        log.warning(
            "resuming request %s left %s by %s (lease ran out %s)",
            row.id,
            status.value,
            row.lease_holder or "a process from before leases",
            row.lease_until.isoformat() if row.lease_until else "never set",
        )
        if status == RequestStatus.APPROVED:
            # Its process died before touching Azure: carry it out as if just approved.
            return self.execute(row.id)
        with self.store.transaction() as session:
            row = self.load(session, request_id)
        if row.attempts > self.max_attempts:
            return self._finish_failed(
                row,
                f"it was interrupted {self.max_attempts} times while being carried out, so "
                "the bot gave up. Check in Azure whether it happened before asking again.",
            )
        return self._attempt(row)

    def approve_in_flight(self, row: RequestRow, actor: str) -> tuple[RequestRow, str]:
        """A lead's Approve on a request already approved: if its carry-out was interrupted
        (lease ran out), resume it now rather than wait for the sweep; else say it is on."""
        ref = short_ref(row.id)
        done = self.resume(row.id, by=actor)
        if done is not None:
            return done, (
                f"Request {ref} had been interrupted while being carried out; resumed it now. "
                f"{self.outcome_text(done)}"
            )
        with self.store.transaction() as session:
            now_row = self.load(session, row.id)
        if now_row.status not in leases.IN_FLIGHT:
            # Carried out meanwhile, by the approval that moved it on: this one did nothing.
            raise UserError(f"Request {ref} is no longer pending. {self.outcome_text(now_row)}")
        raise UserError(
            f"Request {ref} is no longer pending: it was approved by {now_row.decided_by} and "
            "is being carried out. If that is interrupted, the bot resumes it automatically "
            f"within a minute; {now_row.requester} hears the outcome."
        )
