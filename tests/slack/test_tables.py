"""Migration 0002 downgrades cleanly. (That every migration builds exactly the models'
schema is checked for all tables in tests/approvals/test_migrations.py.)"""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

import approvals.slack_tables as slack_tables
from approvals.store import Store, alembic_config

SLACK_TABLES = {
    slack_tables.SlackCardRow.__tablename__,
    slack_tables.SlackSentStepRow.__tablename__,
    "slack_inbound",  # made by 0002, replaced by the inbox in 0004
    slack_tables.SlackPersonRow.__tablename__,
}


def test_downgrade_to_0001_drops_only_the_slack_tables(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    with store.engine.begin() as connection:
        config = alembic_config(store.engine)
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    tables = set(inspect(store.engine).get_table_names())
    assert tables.isdisjoint(SLACK_TABLES | {"inbox"})
    assert {"requests", "outbox", "audit_events"} <= tables
    store.engine.dispose()
