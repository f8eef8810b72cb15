"""A worker's claim round as SQL the driver runs (`approvals.inbox.claim` calls it): the
items it has handled marked done, and the items due claimed, in one transaction.

Driver SQL, not SQLAlchemy statements: building, executing and reading SQLAlchemy's cost
the worker more CPU than the database spent. On SQLite that CPU was spent holding the
database's one write lock, which every ack's insert waits for: measured in-process, a round
that completed 8 items and claimed 8 more took about 700 us of CPU through SQLAlchemy, most
of it inside the lock. Here only the statements run inside it; turning the returned rows
into values (`readable`) happens after the commit.

Both dialects claim in the same shape: two sub-selects, each ordered as its partial index is
(`ix_inbox_pending`, `ix_inbox_running`), so the database walks the index in order and stops
after `limit`. Ordered that way, PostgreSQL reads with a plain index scan, which marks the
index entries of rows already handled as dead the first time it meets them. A single
condition ORed over both states made it choose bitmap scans, which never mark them: during a
burst every claim then re-read every handled row since the last vacuum (about 350 index
entries per claim in bench/ack_latency.py, a third of the database's CPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Dialect

from approvals.tables import InboxRow, InboxStatus

_TABLE = InboxRow.__tablename__
_DONE, _PENDING, _RUNNING = (
    InboxStatus.DONE.value,
    InboxStatus.PENDING.value,
    InboxStatus.RUNNING.value,
)
# What a claim returns of each row, in this order.
CLAIMED_COLUMNS = ("id", "delivery_key", "handler", "payload", "attempts", "received_at")

# On PostgreSQL, the completions and the claim in one statement (one round trip). The
# completed rows are the claimer's own and running, so neither sub-select can pick them:
# the lapsed one leaves them out by id, as a row may be changed only once in a statement.
# Each sub-select locks `SKIP LOCKED`, so claimers in parallel pass each other's rows by.
_COMPLETE_AND_CLAIM_POSTGRES = f"""
WITH done AS (
    UPDATE {_TABLE}
    SET status = '{_DONE}', payload = NULL, finished_at = %(now)s,
        lease_until = NULL, last_error = NULL
    WHERE id = ANY(%(completing)s) AND status = '{_RUNNING}' AND claimed_by = %(holder)s
)
UPDATE {_TABLE}
SET status = '{_RUNNING}', lease_until = %(lease_until)s,
    claimed_by = %(holder)s, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM (
        SELECT id FROM (
            SELECT id FROM {_TABLE}
            WHERE status = '{_PENDING}' AND available_at <= %(now)s
            ORDER BY available_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ) AS pending
        UNION ALL
        SELECT id FROM (
            SELECT id FROM {_TABLE}
            WHERE status = '{_RUNNING}' AND lease_until < %(now)s
                AND id <> ALL(%(completing)s)
            ORDER BY lease_until LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ) AS lapsed
    ) AS due
    ORDER BY id LIMIT %(limit)s
)
RETURNING {", ".join(CLAIMED_COLUMNS)}
"""

# On SQLite, two statements in the transaction that holds the write lock: the completions
# first, so the claim cannot pick a row just completed.
_CLAIM_SQLITE = f"""
UPDATE {_TABLE}
SET status = '{_RUNNING}', lease_until = :lease_until,
    claimed_by = :holder, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM (
        SELECT id FROM (
            SELECT id FROM {_TABLE}
            WHERE status = '{_PENDING}' AND available_at <= :now
            ORDER BY available_at, id LIMIT :limit
        )
        UNION ALL
        SELECT id FROM (
            SELECT id FROM {_TABLE}
            WHERE status = '{_RUNNING}' AND lease_until < :now
            ORDER BY lease_until LIMIT :limit
        )
    )
    ORDER BY id LIMIT :limit
)
RETURNING {", ".join(CLAIMED_COLUMNS)}
"""


@functools.lru_cache(maxsize=64)
def _complete_sqlite(count: int) -> str:
    return (
        f"UPDATE {_TABLE} SET status = '{_DONE}', payload = NULL, finished_at = :now, "
        "lease_until = NULL, last_error = NULL "
        f"WHERE id IN ({', '.join(f':item{n}' for n in range(count))}) "
        f"AND status = '{_RUNNING}' AND claimed_by = :holder"
    )


def complete_then_claim(
    connection: Connection, values: dict[str, Any], completing: Sequence[int]
) -> list[tuple[Any, ...]]:
    """In the caller's transaction: mark done the holder's `completing` items, then claim
    up to `values["limit"]` due ones. `values`: now, lease_until, holder, limit. The rows
    come back as the driver returns them (`CLAIMED_COLUMNS`); `readable` converts them."""
    if connection.dialect.name == "postgresql":
        rows = connection.exec_driver_sql(
            _COMPLETE_AND_CLAIM_POSTGRES, {**values, "completing": list(completing)}
        ).all()
        return [tuple(row) for row in rows]
    driver = connection.connection.dbapi_connection
    assert driver is not None
    bind_time = _bind_time(connection.dialect)
    now, holder = bind_time(values["now"]), values["holder"]
    if completing:
        items = {f"item{n}": item_id for n, item_id in enumerate(completing)}
        driver.execute(_complete_sqlite(len(completing)), {"now": now, "holder": holder, **items})
    if values["limit"] <= 0:
        return []
    claimed = driver.execute(
        _CLAIM_SQLITE,
        {
            "now": now,
            "holder": holder,
            "limit": values["limit"],
            "lease_until": bind_time(values["lease_until"]),
        },
    )
    return list(claimed.fetchall())


def readable(dialect: Dialect, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Claimed rows with their values as SQLAlchemy's column types read them (the payload's
    JSON and the times, which SQLite stores as text), after the write lock is given back."""
    if dialect.name == "postgresql":
        return rows  # psycopg has read them already
    readers = _readers(dialect)
    return [
        tuple(
            value if read is None else read(value) for value, read in zip(row, readers, strict=True)
        )
        for row in rows
    ]


_time_binders: dict[Dialect, Callable[[Any], Any]] = {}
_readers_by_dialect: dict[Dialect, list[Callable[[Any], Any] | None]] = {}


def _bind_time(dialect: Dialect) -> Callable[[Any], Any]:
    """The time columns' bind processor: values stored exactly as the ORM stores them, so
    a comparison in SQL compares like with like."""
    bind = _time_binders.get(dialect)
    if bind is None:
        column_type = InboxRow.__table__.c.lease_until.type
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        bind = _time_binders[dialect] = process if process is not None else _as_is
    return bind


def _readers(dialect: Dialect) -> list[Callable[[Any], Any] | None]:
    readers = _readers_by_dialect.get(dialect)
    if readers is None:
        columns = InboxRow.__table__.c
        readers = _readers_by_dialect[dialect] = [
            columns[name].type.dialect_impl(dialect).result_processor(dialect, None)
            for name in CLAIMED_COLUMNS
        ]
    return readers


def _as_is(value: Any) -> Any:
    return value
