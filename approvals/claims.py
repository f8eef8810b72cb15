"""Claiming work in the database, so every replica may run every sweep.

Two primitives: insert a row unless its key exists (the unique key is the claim), and a
lease per sweep moved forward by compare-and-set (one replica runs each round).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from approvals.sweep_tables import SweepLeaseRow
from approvals.tables import Base


def insert_once(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """Insert a row; if one with the same unique key exists, do nothing. True if inserted.

    `ON CONFLICT DO NOTHING` rather than catching IntegrityError: the transaction stays
    usable, so the claim can share it with the work it guards. Whether a row went in is
    read from `RETURNING`, not `rowcount`, which PostgreSQL drivers report as -1 for an
    insert that returns the generated key.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = pg_insert(model).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite_insert(model).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - the store supports SQLite and PostgreSQL only
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    result = session.execute(statement.returning(*inspect(model).primary_key))
    return result.first() is not None


def claim_due(session: Session, name: str, now: datetime, interval: timedelta, holder: str) -> bool:
    """Claim this round of sweep `name` if it is due; the next round is due `interval` later.

    The first call for a name runs at once (a fresh deployment sweeps on start).
    """
    insert_once(
        session,
        SweepLeaseRow,
        {"name": name, "next_due_at": now, "last_claimed_at": None, "claimed_by": None},
    )
    result = session.execute(
        update(SweepLeaseRow)
        .where(SweepLeaseRow.name == name, SweepLeaseRow.next_due_at <= now)
        .values(next_due_at=now + interval, last_claimed_at=now, claimed_by=holder[:64])
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
