"""Pauses of an edge's scopes, shared through the database by every outbox worker.

A scope is what the edge's rate limits and outages apply to: for Slack, a Web API method,
or a method and channel where Slack limits per channel (`chat.postMessage:C0123`). The
edge asks `blocking(scopes)` before a call, and reports what happened after it:

- a 429 (`rate_limited`) pauses the scope for its Retry-After, whatever message hit it;
- a 5xx or a timeout (`failing`) pauses it for a short backoff that grows with each
  consecutive failure, capped, with jitter so replicas do not probe in step; only the
  first failure in a row costs the probing message an attempt (the later ones are Slack's
  outage, not the message's fault);
- the first call that gets through after a pause (`lifted`) removes it and wakes the
  messages that were put back for it (`OutboxRow.waiting_for`).

So during an outage one message at a time probes each scope (a different one each time:
`OutboxWorker.run_once`), the others wait without spending their attempts, an outage of
any length dead-letters nothing, and everything flows again within the cap of recovery.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from approvals.store import Store
from approvals.tables import DeliveryPauseRow, OutboxRow, OutboxStatus
from workspaces.clock import Clock

RATE_LIMITED = "rate_limited"
FAILING = "failing"
# A transient failure keeps the scope paused at most this long: delivery resumes within
# it (plus one poll) of Slack recovering.
TRANSIENT_BACKOFF_CAP = timedelta(seconds=10)
FIRST_BACKOFF = timedelta(seconds=1)


@dataclass(frozen=True)
class Pause:
    scope: str
    until: datetime
    cause: str
    failures: int = 0  # the scope's failures in a row, this one included (FAILING only)


def transient_backoff(
    failures: int, rng: random.Random, cap: timedelta = TRANSIENT_BACKOFF_CAP
) -> timedelta:
    """1 s, 2 s, 4 s ... up to `cap` for the `failures`-th failure in a row, each drawn
    between half and all of that ("equal jitter": never zero, never in lockstep)."""
    # The exponent is bounded: an outage's failures in a row have no bound, a timedelta has.
    ceiling = min(FIRST_BACKOFF * 2 ** min(max(failures - 1, 0), 20), cap).total_seconds()
    return timedelta(seconds=ceiling / 2 + rng.uniform(0, ceiling / 2))


class OutboxPauses:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        transient_cap: timedelta = TRANSIENT_BACKOFF_CAP,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.transient_cap = transient_cap
        self.rng = rng or random.Random()

    def blocking(self, scopes: list[str]) -> tuple[Pause | None, list[str]]:
        """The pause (latest-ending) that forbids calling now, if any; and the scopes whose
        pause has run out, which the caller lifts if its call gets through."""
        now = self.clock.now()
        with self.store.transaction() as session:
            rows = list(
                session.scalars(select(DeliveryPauseRow).where(DeliveryPauseRow.scope.in_(scopes)))
            )
        active = [r for r in rows if r.until > now]
        ran_out = [r.scope for r in rows if r.until <= now]
        if not active:
            return None, ran_out
        latest = max(active, key=lambda r: r.until)
        return Pause(latest.scope, latest.until, latest.cause), ran_out

    def rate_limited(self, scope: str, retry_after: timedelta, reason: str) -> Pause:
        """Slack said 429: nobody calls `scope` before Retry-After. Not a failure."""
        until = self.clock.now() + retry_after
        with self.store.transaction() as session:
            table = DeliveryPauseRow.__table__
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            statement = insert(DeliveryPauseRow).values(
                scope=scope, until=until, cause=RATE_LIMITED, failures=0, reason=reason[:1000]
            )
            # A later Retry-After from another worker must not be shortened by ours.
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["scope"],
                    set_={
                        "until": case(
                            (table.c.until > statement.excluded.until, table.c.until),
                            else_=statement.excluded.until,
                        ),
                        "cause": RATE_LIMITED,
                        "failures": 0,
                        "reason": statement.excluded.reason,
                    },
                )
            )
            row = session.get(DeliveryPauseRow, scope, populate_existing=True)
            assert row is not None
            return Pause(scope, row.until, row.cause)

    def failing(self, scope: str, reason: str, *, at_least: timedelta | None = None) -> Pause:
        """A call to `scope` failed (5xx, timeout): pause it for the next backoff step."""
        now = self.clock.now()
        with self.store.transaction() as session:
            existing = session.get(DeliveryPauseRow, scope)
            failures = (existing.failures if existing is not None else 0) + 1
            backoff = transient_backoff(failures, self.rng, self.transient_cap)
            until = now + max(backoff, at_least or timedelta(0))
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            statement = insert(DeliveryPauseRow).values(
                scope=scope, until=until, cause=FAILING, failures=failures, reason=reason[:1000]
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["scope"],
                    set_={
                        "until": until,
                        "cause": FAILING,
                        "failures": failures,
                        "reason": statement.excluded.reason,
                    },
                )
            )
        return Pause(scope, until, FAILING, failures)

    def lifted(self, scopes: list[str]) -> int:
        """A call got through after these scopes' pauses ran out: remove them and make the
        messages put back for them due now. Returns how many messages were woken."""
        if not scopes:
            return 0
        now = self.clock.now()
        with self.store.transaction() as session:
            # Only pauses that are still over: a fresh 429 from another worker stays.
            session.execute(
                delete(DeliveryPauseRow).where(
                    DeliveryPauseRow.scope.in_(scopes), DeliveryPauseRow.until <= now
                )
            )
            woken = session.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.status == OutboxStatus.PENDING,
                    OutboxRow.waiting_for.in_(scopes),
                    OutboxRow.next_attempt_at > now,
                )
                .values(next_attempt_at=now, waiting_for=None, last_error=None)
                .execution_options(synchronize_session=False)
            )
            return int(getattr(woken, "rowcount", 0) or 0)
