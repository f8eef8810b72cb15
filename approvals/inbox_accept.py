"""Accepting inbound items into the inbox: the edge's side of `approvals.inbox`.

An item is kept here before Slack's ack or Event Grid's 200 (`accept_many`, in batches by
`approvals/inbox_writer.py`; `keep`, one at a time). Its unique delivery key makes a
retried or doubled delivery a no-op insert. What happens to it next (claims, leases,
completion) is `approvals/inbox.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

from approvals.inbox import LEASE, NOTIFY_CHANNEL
from approvals.store import Store
from approvals.tables import InboxRow, InboxStatus

# Slack waits 3 s for an ack. A batch of arrivals the database has not kept by then (its
# host gone dark, a lock held) would make every ack behind it late: the acks' writers
# (`approvals/inbox_writer.py`) give up on a batch after this long.
KEEP_DEADLINE = 2.0


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
    """Keep one inbound item in the caller's transaction: its id, or None when an item with
    this key was already accepted. `accept_many` for one arrival (the acks use it in
    batches through `InboxWriter`; the Event Grid webhook one at a time).

    With `claimed_by`, the item is accepted already claimed by that holder (the edge, for
    what must happen within Slack's 3-second trigger window): no worker takes it unless the
    holder dies and its lease runs out.
    """
    bound = connection.connection() if isinstance(connection, Session) else connection
    [kept] = accept_many(
        bound, [Arrival(delivery_key, handler, payload, claimed_by)], now, lease=lease
    )
    return kept


@dataclass(frozen=True)
class Arrival:
    """One inbound item on its way into the inbox."""

    delivery_key: str
    handler: str
    payload: dict[str, Any]
    # Accepted already claimed by this holder (trigger-window work the edge runs itself).
    claimed_by: str | None = None


def accept_many(
    connection: Connection, arrivals: Sequence[Arrival], now: datetime, *, lease: timedelta = LEASE
) -> list[int | None]:
    """Keep several inbound items in one statement: per arrival, its new id, or None when
    an item with its key was already accepted (earlier, or earlier in this batch).

    On PostgreSQL the same statement wakes the workers (`pg_notify`, delivered at commit
    and only if the insert commits; once per transaction however many rows call it) when
    the batch holds work for them. One statement is one round trip: the acks' writer on
    PostgreSQL runs the same SQL (`accept_statement`) on a connection in autocommit
    (`PostgresInboxWriter`), so a batch costs one round trip instead of four (BEGIN, INSERT,
    NOTIFY, COMMIT).
    """
    if not arrivals:
        return []
    statement, parameters, keys = accept_statement(connection.dialect, arrivals, now, lease=lease)
    return ids_in_order(keys, connection.exec_driver_sql(statement, parameters))


def accept_statement(
    dialect: Dialect,
    arrivals: Sequence[Arrival],
    now: datetime,
    *,
    lease: timedelta = LEASE,
    numbered: bool = False,
) -> tuple[str, tuple[Any, ...], list[str]]:
    """What `accept_many` runs, for a caller with a driver connection of its own (the acks'
    writer on the event loop): the SQL, its parameters, and the arrivals' delivery keys in
    order (for `ids_in_order`).

    `numbered`: PostgreSQL's own placeholders (`$1`, `$2`, ...), for psycopg's raw cursor.
    With `%s`, psycopg tokenizes the statement with a regular expression on every execution
    once it has over 50 parameters (six arrivals): a third of a batch's CPU."""
    rows = [_row_values(arrival, now, lease) for arrival in arrivals]
    placeholder = "$" if numbered else _placeholder(dialect)
    statement = _accept_sql(placeholder, len(rows), dialect.name == "postgresql")
    return statement, _bound(dialect, rows), [row[0] for row in rows]


def ids_in_order(keys: Sequence[str], returned: Iterable[Sequence[Any]]) -> list[int | None]:
    """Per key, the id the statement returned for it, or None for a repeat."""
    kept = {key: int(row_id) for row_id, key, *_ in returned}
    # A key twice in one batch: the first arrival is the item, the second a repeat.
    return [kept.pop(key, None) for key in keys]


# The acks' insert, as SQL the driver runs: SQLAlchemy's insertmanyvalues cost the edge
# 35-60 us of CPU per row (measured: 460 us for a batch of 5, on the thread that shares the
# GIL with the event loop answering Slack); this costs a few. Values go through each
# column's own SQLAlchemy bind processor, so they are stored exactly as the ORM stores them.
_ACCEPT_COLUMNS = (
    "delivery_key",
    "handler",
    "payload",
    "status",
    "attempts",
    "received_at",
    "available_at",
    "claimed_by",
    "lease_until",
)


@functools.lru_cache(maxsize=1024)
def _accept_sql(placeholder: str, count: int, notify: bool) -> str:
    """The insert of `count` rows; `placeholder` "$" numbers them ($1, $2, ...)."""
    width = len(_ACCEPT_COLUMNS)
    if placeholder == "$":
        rows = [
            "(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")"
            for row in range(count)
        ]
    else:
        rows = ["(" + ", ".join([placeholder] * width) + ")"] * count
    insert = (
        f"INSERT INTO {InboxRow.__tablename__} ({', '.join(_ACCEPT_COLUMNS)}) "
        f"VALUES {', '.join(rows)} "
        "ON CONFLICT (delivery_key) DO NOTHING RETURNING id, delivery_key"
    )
    if not notify:
        return insert
    # An item accepted already claimed (by the edge) is no work for the workers.
    return (
        f"WITH kept AS ({insert}, claimed_by) "
        "SELECT id, delivery_key, CASE WHEN claimed_by IS NULL "
        f"THEN pg_notify('{NOTIFY_CHANNEL}', '') END FROM kept"
    )


def _placeholder(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


_processors: dict[Dialect, list[Callable[[Any], Any] | None]] = {}


def _bound(dialect: Dialect, rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The rows' values, flat, each as its column's type binds it on this dialect."""
    processors = _column_processors(dialect)
    # The rows of a batch share their times: each is bound once.
    times: dict[tuple[int, datetime], Any] = {}
    bound: list[Any] = []
    for row in rows:
        for column, (value, process) in enumerate(zip(row, processors, strict=True)):
            if process is None or value is None:
                bound.append(value)
            elif isinstance(value, datetime):
                key = (column, value)
                if key not in times:
                    times[key] = process(value)
                bound.append(times[key])
            else:
                bound.append(process(value))
    return tuple(bound)


def received_at_bound(dialect: Dialect, now: datetime) -> Any:
    """`now` as the acks' insert binds it into `received_at` (`_bound`), to find its rows."""
    process = _column_processors(dialect)[_ACCEPT_COLUMNS.index("received_at")]
    return now if process is None else process(now)


def _column_processors(dialect: Dialect) -> list[Callable[[Any], Any] | None]:
    """Each of `_ACCEPT_COLUMNS`' bind processors on this dialect, found once."""
    processors = _processors.get(dialect)
    if processors is None:
        columns = InboxRow.__table__.c
        processors = _processors[dialect] = [
            columns[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in _ACCEPT_COLUMNS
        ]
    return processors


def _row_values(arrival: Arrival, now: datetime, lease: timedelta) -> tuple[Any, ...]:
    """An arrival's values in `_ACCEPT_COLUMNS` order."""
    claimed = arrival.claimed_by is not None
    return (
        arrival.delivery_key[:255],
        arrival.handler[:64],
        arrival.payload,
        InboxStatus.RUNNING if claimed else InboxStatus.PENDING,
        1 if claimed else 0,
        now,
        now,
        arrival.claimed_by[:64] if arrival.claimed_by else None,
        now + lease if claimed else None,
    )


def keep(
    store: Store, delivery_key: str, handler: str, payload: dict[str, Any], now: datetime
) -> bool:
    """`accept` in a transaction of its own: False if an item with this key was kept before."""
    with store.transaction() as session:
        return accept(session, delivery_key, handler, payload, now) is not None
