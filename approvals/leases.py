"""Leases on requests whose side effect is in flight (`approved`, `executing`).

The process that moves a request to `approved` or `executing` takes a lease on it, in the
same transaction; while the Azure call runs (minutes, with the SDK's retries) a heartbeat
renews it. A lease that ran out means its holder is gone (killed, crashed, cut off from
the database), so any replica's sweep may claim the request by compare-and-set and resume
it. Resuming re-runs the step, which Azure makes idempotent: names derive from the request.

    holder alive:   lease_until keeps moving ahead of the clock (heartbeat every lease/3)
    holder gone:    lease_until <= now -> one sweep claims it (UPDATE ... WHERE lease ran out)
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from approvals.states import RequestStatus
from approvals.store import Store
from approvals.tables import RequestRow
from workspaces.clock import Clock

log = logging.getLogger(__name__)

# Short, so a request whose holder died is resumed within about a minute (the sweeps run
# every 15 s); the heartbeat keeps a live holder's lease however long Azure takes.
LEASE = timedelta(seconds=30)
# Carry-outs of one request (the first, then each resumption) before the bot gives up.
MAX_ATTEMPTS = 5

IN_FLIGHT = (RequestStatus.APPROVED, RequestStatus.EXECUTING)

_holder: tuple[int, str] | None = None
_holder_lock = threading.Lock()


def process_holder() -> str:
    """This process's name on the leases it holds: host, pid and a random part (a pid is
    reused after a restart, and two containers may share a hostname)."""
    global _holder
    pid = os.getpid()
    with _holder_lock:
        if _holder is None or _holder[0] != pid:
            _holder = (pid, f"{socket.gethostname()[:40]}-{pid}-{secrets.token_hex(4)}")
        return _holder[1]


def taken(now: datetime, holder: str, length: timedelta = LEASE) -> dict[str, Any]:
    """The columns of a fresh lease, to write with the transition that puts work in flight."""
    return {"lease_until": now + length, "lease_holder": holder[:64]}


def released() -> dict[str, Any]:
    return {"lease_until": None, "lease_holder": None}


def stalled(session: Session, now: datetime) -> list[int]:
    """Requests in flight whose lease ran out (or that never had one: made before leases)."""
    return list(
        session.scalars(
            select(RequestRow.id)
            .where(
                RequestRow.status.in_(IN_FLIGHT),
                or_(RequestRow.lease_until.is_(None), RequestRow.lease_until <= now),
            )
            .order_by(RequestRow.id)
        )
    )


def claim_stalled(
    session: Session,
    request_id: int,
    status: RequestStatus,
    now: datetime,
    holder: str,
    length: timedelta = LEASE,
) -> bool:
    """Take over a request in `status` whose lease ran out. Exactly one claimant wins: the
    winner's lease lies ahead of `now`, so the same UPDATE finds nothing for the others.
    Taking over an `executing` request starts another attempt, which is counted."""
    changes: dict[str, Any] = taken(now, holder, length)
    if status == RequestStatus.EXECUTING:
        changes["attempts"] = RequestRow.attempts + 1
    result = session.execute(
        update(RequestRow)
        .where(
            RequestRow.id == request_id,
            RequestRow.status == status,
            or_(RequestRow.lease_until.is_(None), RequestRow.lease_until <= now),
        )
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def renew(session: Session, request_id: int, holder: str, until: datetime) -> bool:
    """Move the lease on, only while `holder` still holds it (compare-and-set on the holder)."""
    result = session.execute(
        update(RequestRow)
        .where(
            RequestRow.id == request_id,
            RequestRow.status.in_(IN_FLIGHT),
            RequestRow.lease_holder == holder[:64],
        )
        .values(lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


class Heartbeat:
    """Renews a request's lease every `every` seconds of wall time while the block runs.

    A daemon thread: it dies with the process, which is the point (a dead process must stop
    renewing). Times written come from the injected clock.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        request_id: int,
        holder: str,
        length: timedelta = LEASE,
        every: float | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.request_id = request_id
        self.holder = holder
        self.length = length
        self.every = every if every is not None else length.total_seconds() / 3
        self.renewals = 0
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-heartbeat-{request_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=max(self.every, 1.0) + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with self.store.transaction() as session:
                    held = renew(
                        session, self.request_id, self.holder, self.clock.now() + self.length
                    )
            except Exception:
                # The database is away for a moment: try again; if it stays away the lease
                # runs out and another replica resumes the request, which is idempotent.
                log.warning(
                    "renewing the lease on request %s failed", self.request_id, exc_info=True
                )
                continue
            if not held:
                self.lost = True
                log.warning(
                    "the lease on request %s was taken over; no longer renewing it",
                    self.request_id,
                )
                return
            self.renewals += 1
