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
replica) a no-op insert.

PostgreSQL: claims use `SELECT ... FOR UPDATE SKIP LOCKED`, so any number of workers on any
number of machines share the rows without waiting on each other, and an insert sends
`NOTIFY amlbot_inbox` at commit so idle workers wake at once. SQLite: the claim is a
compare-and-set per row, meant for one claiming process per database file.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from approvals import outbox
from approvals.directory import Directory
from approvals.store import Store
from approvals.tables import InboxRow, UTCDateTime

NOTIFY_CHANNEL = "amlbot_inbox"
LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 5
MAX_BACKOFF = timedelta(seconds=30)
# Handled rows keep their key (the de-duplication) this long: Slack retries for about an hour.
KEEP_HANDLED_FOR = timedelta(days=2)


class InboxStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True)
class InboxItem:
    """A claimed row, as a handler sees it."""

    id: int
    delivery_key: str
    handler: str
    payload: dict[str, Any]
    attempts: int  # including this one
    received_at: datetime


def accept(
    connection: Session | Connection,
    delivery_key: str,
    handler: str,
    payload: dict[str, Any],
    now: datetime,
    *,
    claimed_by: str | None = None,
    lease: timedelta = LEASE,
) -> int | None:
    """Keep one inbound item: its id, or None when an item with this key was already
    accepted.

    With `claimed_by`, the item is accepted already claimed by that holder (the edge, for
    what must happen within Slack's 3-second trigger window): no worker takes it unless the
    holder dies and its lease runs out.

    One statement (on PostgreSQL the insert and its NOTIFY together): it runs before every
    ack, where each round trip to the database is felt.
    """
    claimed = claimed_by is not None
    values = {
        "delivery_key": delivery_key[:255],
        "handler": handler[:64],
        "payload": payload,
        "status": (InboxStatus.RUNNING if claimed else InboxStatus.PENDING).value,
        "attempts": 1 if claimed else 0,
        "received_at": now,
        "available_at": now,
        "claimed_by": claimed_by[:64] if claimed_by else None,
        "lease_until": now + lease if claimed else None,
    }
    postgres = _dialect(connection) == "postgresql"
    statement = _ACCEPT_POSTGRES if postgres and not claimed else _ACCEPT
    kept = connection.execute(statement, values).first()
    return int(kept[0]) if kept is not None else None


_COLUMNS = (
    "delivery_key, handler, payload, status, attempts, received_at, available_at, "
    "claimed_by, lease_until"
)
_VALUES = (
    ":delivery_key, :handler, :payload, :status, :attempts, :received_at, :available_at, "
    ":claimed_by, :lease_until"
)
_TYPES = (
    bindparam("payload", type_=JSON()),
    bindparam("received_at", type_=UTCDateTime()),
    bindparam("available_at", type_=UTCDateTime()),
    bindparam("lease_until", type_=UTCDateTime()),
)
_ACCEPT = text(
    f"INSERT INTO inbox ({_COLUMNS}) VALUES ({_VALUES}) "
    "ON CONFLICT (delivery_key) DO NOTHING RETURNING id"
).bindparams(*_TYPES)
# The NOTIFY is delivered at commit, and only if the insert commits; only for a new row.
_ACCEPT_POSTGRES = text(
    f"WITH kept AS (INSERT INTO inbox ({_COLUMNS}) VALUES ({_VALUES}) "
    "ON CONFLICT (delivery_key) DO NOTHING RETURNING id) "
    f"SELECT id, pg_notify('{NOTIFY_CHANNEL}', '') FROM kept"
).bindparams(*_TYPES)


def _dialect(connection: Session | Connection) -> str:
    if isinstance(connection, Connection):
        return connection.dialect.name
    return connection.get_bind().dialect.name


def _claimable(now: datetime) -> Any:
    return or_(
        and_(InboxRow.status == InboxStatus.PENDING.value, InboxRow.available_at <= now),
        and_(InboxRow.status == InboxStatus.RUNNING.value, InboxRow.lease_until < now),
    )


def claim(
    store: Store, holder: str, now: datetime, *, limit: int = 1, lease: timedelta = LEASE
) -> list[InboxItem]:
    """Claim up to `limit` items that are due, or whose last holder's lease ran out."""
    if limit <= 0:
        return []
    claimed_values = {
        "status": InboxStatus.RUNNING.value,
        "lease_until": now + lease,
        "claimed_by": holder[:64],
        "attempts": InboxRow.attempts + 1,
    }
    with store.transaction() as session:
        if session.get_bind().dialect.name == "postgresql":
            ids = list(
                session.scalars(
                    select(InboxRow.id)
                    .where(_claimable(now))
                    .order_by(InboxRow.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                session.execute(
                    update(InboxRow)
                    .where(InboxRow.id.in_(ids))
                    .values(**claimed_values)
                    .execution_options(synchronize_session=False)
                )
        else:
            candidates = session.scalars(
                select(InboxRow.id).where(_claimable(now)).order_by(InboxRow.id).limit(limit)
            )
            ids = []
            for row_id in list(candidates):
                won = session.execute(
                    update(InboxRow)
                    .where(InboxRow.id == row_id, _claimable(now))
                    .values(**claimed_values)
                    .execution_options(synchronize_session=False)
                )
                if getattr(won, "rowcount", 0) == 1:
                    ids.append(row_id)
        if not ids:
            return []
        rows = session.scalars(select(InboxRow).where(InboxRow.id.in_(ids)).order_by(InboxRow.id))
        return [
            InboxItem(
                id=row.id,
                delivery_key=row.delivery_key,
                handler=row.handler,
                payload=dict(row.payload or {}),
                attempts=row.attempts,
                received_at=row.received_at,
            )
            for row in rows
        ]


def _mine(item_id: int, holder: str) -> Any:
    return and_(
        InboxRow.id == item_id,
        InboxRow.status == InboxStatus.RUNNING.value,
        InboxRow.claimed_by == holder[:64],
    )


def complete(store: Store, item_id: int, holder: str, now: datetime) -> bool:
    """Mark a handled item done and forget its payload. False if the lease was lost (the
    item was claimed again elsewhere, which then handles it idempotently)."""
    with store.transaction() as session:
        result = session.execute(
            update(InboxRow)
            .where(_mine(item_id, holder))
            .values(
                status=InboxStatus.DONE.value,
                payload=None,
                finished_at=now,
                lease_until=None,
                last_error=None,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


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
                status=status.value,
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
        status=InboxStatus.PENDING.value,
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
    with store.transaction() as session:
        result = session.execute(
            update(InboxRow)
            .where(
                InboxRow.id.in_(ids),
                InboxRow.status == InboxStatus.RUNNING.value,
                InboxRow.claimed_by == holder[:64],
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class InboxDepth:
    pending: int
    running: int
    dead: int
    oldest_waiting: timedelta | None  # of what is pending or running


def depth(store: Store, now: datetime) -> InboxDepth:
    with store.transaction() as session:
        counts = dict(
            session.execute(
                select(InboxRow.status, func.count())
                .where(
                    InboxRow.status.in_(
                        [InboxStatus.PENDING.value, InboxStatus.RUNNING.value, "dead"]
                    )
                )
                .group_by(InboxRow.status)
            ).all()
        )
        oldest = session.scalar(
            select(func.min(InboxRow.received_at)).where(
                InboxRow.status.in_([InboxStatus.PENDING.value, InboxStatus.RUNNING.value])
            )
        )
    return InboxDepth(
        pending=int(counts.get(InboxStatus.PENDING.value, 0)),
        running=int(counts.get(InboxStatus.RUNNING.value, 0)),
        dead=int(counts.get(InboxStatus.DEAD.value, 0)),
        oldest_waiting=(now - oldest) if oldest is not None else None,
    )


def prune(store: Store, now: datetime) -> int:
    """Forget handled items whose keys no retry can repeat any more."""
    with store.transaction() as session:
        result = session.execute(
            delete(InboxRow).where(
                InboxRow.status == InboxStatus.DONE.value,
                InboxRow.finished_at < now - KEEP_HANDLED_FOR,
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


def keep(
    store: Store, delivery_key: str, handler: str, payload: dict[str, Any], now: datetime
) -> bool:
    """`accept` in a transaction of its own: False if an item with this key was kept before."""
    with store.transaction() as session:
        return accept(session, delivery_key, handler, payload, now) is not None


def tell_leads_of_dead_item(
    store: Store,
    directory: Directory,
    item: InboxItem,
    person: str,
    error_id: str,
    now: datetime,
) -> None:
    """Tell the leads of `person`'s workspaces that an item they sent failed every attempt,
    and where it is kept (the inbox, by its number)."""
    leads = {lead for ws in directory.workspaces_of(person) for lead in ws.team_leads}
    with store.transaction() as session:
        for lead in sorted(leads - {person}):
            outbox.notify_person(
                session,
                lead,
                f"amlbot could not handle something {person} sent ({item.handler}) after "
                f"{item.attempts} attempts (error id `{error_id}`). It is kept as inbox "
                f"item {item.id}; the log has the details under that error id.",
                now=now,
                dedupe_key=f"dead-inbox:{item.id}:{lead}",
            )
