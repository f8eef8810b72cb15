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
from collections.abc import Callable
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
    """Calls `renew` every `every` seconds of wall time while the block runs, until it
    answers False (the lease was taken over: stop renewing what is no longer ours). Used
    for a request's lease while it is carried out (`request_renewal`) and an outbox row's
    claim while it is delivered (`bot/outbox_worker.py`).

    A daemon thread: it dies with the process, which is the point (a dead process must stop
    renewing). Leaving the block waits for the thread, so no renewal lands after what the
    block's caller writes next.
    """

    def __init__(self, renew: Callable[[], bool], every: float, what: str) -> None:
        self.renew = renew
        self.every = every
        self.what = what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="amlbot-heartbeat", daemon=True)

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
                held = self.renew()
            except Exception:
                # The database is away for a moment: try again; if it stays away the lease
                # runs out and another holder takes the work over, which is idempotent.
                log.warning("renewing the lease on %s failed", self.what, exc_info=True)
                continue
            if not held:
                log.warning("the lease on %s was taken over; no longer renewing it", self.what)
                return


def request_renewal(
    store: Store, clock: Clock, request_id: int, holder: str, length: timedelta = LEASE
) -> Callable[[], bool]:
    """A `Heartbeat`'s renewal of a request's lease, while `holder` holds it."""

    def renew_now() -> bool:
        with store.transaction() as session:
            return renew(session, request_id, holder, clock.now() + length)

    return renew_now
