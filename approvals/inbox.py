"""The inbox: inbound work kept in the database before anyone is told it was accepted.

Every slash command, click, form submission, App Home event and Event Grid delivery is
written here *before* Slack's ack or Event Grid's 200, and handled later by a worker that
claims it. A claim is a lease; a worker that dies (or is killed mid-call) stops renewing it,
and the row is claimed again once the lease runs out:

    pending --claim--> running --complete--> done (payload emptied)
       ^                  |  \\--fail--> pending, later ... after MAX_ATTEMPTS --> dead
       \\-- lease ran out -/   \\--release (shutdown)--> pending, at once

So claiming is at-least-once; handlers are idempotent (compare-and-set transitions in the
core, deterministic names in Azure), which makes the effects exactly-once. The unique
delivery key makes a retried or doubled delivery (Slack's retries, a proxy, a second
replica) a no-op insert (items come in through `approvals/inbox_accept.py`).

PostgreSQL: claims use `SELECT ... FOR UPDATE SKIP LOCKED`, so any number of workers on any
number of machines share the rows without waiting on each other, and an insert sends
`NOTIFY amlbot_inbox` at commit so idle workers wake at once. SQLite: the claim is a
compare-and-set per row, meant for one claiming process per database file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    String,
    and_,
    bindparam,
    delete,
    literal_column,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import BindParameter

from approvals import inbox_claims
from approvals.column_types import UTCDateTime
from approvals.store import Store, write_turn
from approvals.tables import InboxRow, InboxStatus

log = logging.getLogger(__name__)
T = TypeVar("T")

NOTIFY_CHANNEL = "amlbot_inbox"
LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 5
MAX_BACKOFF = timedelta(seconds=30)
# Handled rows keep their key (the de-duplication) this long: Slack retries for about an hour.
KEEP_HANDLED_FOR = timedelta(days=2)


@dataclass(frozen=True)
class InboxItem:
    """A claimed row, as a handler sees it."""

    id: int
    delivery_key: str
    handler: str
    payload: dict[str, Any]
    attempts: int  # including this one
    received_at: datetime


def in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """`work` in a transaction (on the inbox's autocommit engines, each of its statements
    commits by itself), once more on a fresh connection if the database had dropped
    the first (the inbox's engines skip the pre-ping: after a database restart the first
    use of each pooled connection fails, and the pool is then invalidated)."""
    for attempt in (1, 2):
        try:
            with write_turn(engine), engine.begin() as connection:
                return work(connection)
        except DBAPIError as failed:
            if attempt == 2 or not failed.connection_invalidated:
                raise
    raise AssertionError("unreachable")


# The states as literals in the SQL, not bound parameters: a plan PostgreSQL prepares once
# for any parameters could not use the partial indexes, whose conditions name the state.
_IS_PENDING = InboxRow.status == literal_column(f"'{InboxStatus.PENDING.value}'")
_IS_RUNNING = InboxRow.status == literal_column(f"'{InboxStatus.RUNNING.value}'")


def _pending_due(now: datetime | BindParameter[datetime]) -> Any:
    return and_(_IS_PENDING, InboxRow.available_at <= now)


def _lease_lapsed(now: datetime | BindParameter[datetime]) -> Any:
    return and_(_IS_RUNNING, InboxRow.lease_until < now)


def anything_due(store: Store, now: datetime) -> bool:
    """Whether a claim would find something: a read, so it takes no write lock (on SQLite
    a claim that finds nothing would still hold back the acks' inserts for a moment)."""
    with store.engine.connect() as connection:
        return any(
            connection.execute(statement, {"now": now}).first() is not None
            for statement in _ANY_DUE
        )


def claim(
    store: Store,
    holder: str,
    now: datetime,
    *,
    limit: int = 1,
    lease: timedelta = LEASE,
    completing: Sequence[int] = (),
) -> list[InboxItem]:
    """Claim up to `limit` items that are due, or whose last holder's lease ran out; first,
    in the same transaction, mark done the items in `completing` this holder has handled
    (a busy worker writes its completions with its next claim, not each in a transaction
    of its own: two round trips and a commit fewer per item).

    The claim is an UPDATE of the rows a sub-select picks (`approvals/inbox_claims.py`): on
    PostgreSQL the sub-select locks them `FOR UPDATE SKIP LOCKED`, so claimers in parallel
    pass each other's rows by, and the completions ride in the same statement; on SQLite
    the transaction holds the database's write lock throughout.
    """
    if limit <= 0 and not completing:
        return []
    values = {"now": now, "limit": max(limit, 0), "lease_until": now + lease, "holder": holder[:64]}
    rows = in_transaction(
        store.engine,
        lambda connection: inbox_claims.complete_then_claim(connection, values, completing),
    )
    # Read after the commit: on SQLite, outside the write lock the acks wait for.
    rows = inbox_claims.readable(store.engine.dialect, rows)
    return sorted(
        (
            InboxItem(
                id=item_id,
                delivery_key=delivery_key,
                handler=handler,
                payload=dict(payload or {}),
                attempts=attempts,
                received_at=received_at.astimezone(UTC),
            )
            for item_id, delivery_key, handler, payload, attempts, received_at in rows
        ),
        key=lambda item: item.id,
    )


# Built once: the claim loop runs them many times a second, and building a statement
# costs more CPU than running it.
_NOW = bindparam("now", type_=UTCDateTime())
_ANY_DUE = (
    select(InboxRow.id).where(_pending_due(_NOW)).limit(1),
    select(InboxRow.id).where(_lease_lapsed(_NOW)).limit(1),
)

# Marks done the holder's items among `item_ids` (one, or what a claim is completing).
_COMPLETE_MANY = (
    update(InboxRow)
    .where(
        InboxRow.id.in_(bindparam("item_ids", expanding=True)),
        InboxRow.status == InboxStatus.RUNNING,
        InboxRow.claimed_by == bindparam("holder", type_=String()),
    )
    .values(
        status=InboxStatus.DONE,
        payload=None,
        finished_at=bindparam("now", type_=UTCDateTime()),
        lease_until=None,
        last_error=None,
    )
)


def _mine(item_id: int, holder: str) -> Any:
    return and_(
        InboxRow.id == item_id,
        InboxRow.status == InboxStatus.RUNNING,
        InboxRow.claimed_by == holder[:64],
    )


def complete(store: Store, item_id: int, holder: str, now: datetime) -> bool:
    """Mark a handled item done and forget its payload. False if the lease was lost (the
    item was claimed again elsewhere, which then handles it idempotently)."""
    values = {"item_ids": [item_id], "holder": holder[:64], "now": now}
    return in_transaction(
        store.engine,
        lambda connection: connection.execute(_COMPLETE_MANY, values).rowcount == 1,
    )


def retry_delay(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 10)), MAX_BACKOFF)


def fail(
    store: Store,
    item_id: int,
    holder: str,
    now: datetime,
    error: str,
    *,
    max_attempts: int = MAX_ATTEMPTS,
) -> InboxStatus | None:
    """A handler failed: try again later, or dead-letter it after `max_attempts`. Returns
    the item's new status (None if the lease was lost meanwhile)."""
    with store.transaction() as session:
        row = session.get(InboxRow, item_id)
        if row is None or row.status != InboxStatus.RUNNING or row.claimed_by != holder[:64]:
            return None
        dead = row.attempts >= max_attempts
        status = InboxStatus.DEAD if dead else InboxStatus.PENDING
        session.execute(
            update(InboxRow)
            .where(_mine(item_id, holder))
            .values(
                status=status,
                available_at=now + retry_delay(row.attempts),
                lease_until=None,
                last_error=error[:1000],
                finished_at=now if dead else None,
                # A dead item's payload is kept for the leads to look at (it holds no
                # secrets: they are withheld before the item is accepted).
            )
            .execution_options(synchronize_session=False)
        )
        return status


def release(store: Store, item_ids: Iterable[int], holder: str, now: datetime) -> int:
    """Give items back unhandled (shutting down): claimable at once, the attempt uncounted."""
    return _update_held(
        store,
        item_ids,
        holder,
        status=InboxStatus.PENDING,
        available_at=now,
        lease_until=None,
        claimed_by=None,
        attempts=InboxRow.attempts - 1,
    )


def renew(
    store: Store, item_ids: Iterable[int], holder: str, now: datetime, lease: timedelta = LEASE
) -> int:
    """Extend the leases of items still being handled (the heartbeat)."""
    return _update_held(store, item_ids, holder, lease_until=now + lease)


def _update_held(store: Store, item_ids: Iterable[int], holder: str, **values: Any) -> int:
    """Change the items `holder` still holds; how many it did."""
    ids = list(item_ids)
    if not ids:
        return 0
    statement = (
        update(InboxRow)
        .where(
            InboxRow.id.in_(ids),
            InboxRow.status == InboxStatus.RUNNING,
            InboxRow.claimed_by == holder[:64],
        )
        .values(**values)
    )
    # As the claims are: once more on a fresh connection if the database dropped the first
    # (a release at shutdown just after a database restart), and in a write turn on SQLite.
    return in_transaction(store.engine, lambda connection: connection.execute(statement).rowcount)


def prune(store: Store, now: datetime) -> int:
    """Forget handled items whose keys no retry can repeat any more."""
    with store.transaction() as session:
        result = session.execute(_PRUNE, {"before": now - KEEP_HANDLED_FOR})
        return int(getattr(result, "rowcount", 0) or 0)


# The state as a literal, not a bound value: only then can either database's planner see
# that the condition implies `ix_inbox_done`'s, and read that index.
_PRUNE = delete(InboxRow).where(
    InboxRow.status == literal_column(f"'{InboxStatus.DONE.value}'"),
    InboxRow.finished_at < bindparam("before", type_=UTCDateTime()),
)
