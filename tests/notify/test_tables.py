"""Migration 0003 downgrades cleanly to 0002. (That every migration builds exactly the
models' schema is checked for all tables in tests/approvals/test_migrations.py.)"""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

import approvals.sweep_tables as notify_tables
from approvals.store import Store, alembic_config

NOTIFY_TABLES = {
    table.__tablename__
    for table in (
        notify_tables.SweepLeaseRow,
        notify_tables.JobNoticeRow,
        notify_tables.ComputeAlertRow,
        notify_tables.IdleDigestRow,
        notify_tables.IdleItemRow,
    )
}


def test_downgrade_to_0002_drops_only_the_notify_tables(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    with store.engine.begin() as connection:
        config = alembic_config(store.engine)
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    tables = set(inspect(store.engine).get_table_names())
    assert tables.isdisjoint(NOTIFY_TABLES)
    assert {"jobs", "outbox", "slack_cards"} <= tables
    store.engine.dispose()
