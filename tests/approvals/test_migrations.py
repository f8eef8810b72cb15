"""The Alembic migrations build exactly the schema the ORM models describe, on both stores."""

from __future__ import annotations

import importlib
import pkgutil

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import approvals
from approvals.store import Store, alembic_config, migrate
from approvals.tables import Base


def load_every_table_module() -> None:
    """Some tables live beside their concept (approvals.slack_tables, approvals.sweep_tables):
    load them all, or this test passes or fails with whichever tests ran before it."""
    for module in pkgutil.walk_packages(approvals.__path__, "approvals."):
        if module.name.rsplit(".", 1)[-1].endswith("tables"):
            importlib.import_module(module.name)


def test_migrations_have_a_single_head(sqlite_url: str) -> None:
    store = Store.open(sqlite_url, run_migrations=False)
    heads = ScriptDirectory.from_config(alembic_config(store.engine)).get_heads()
    assert len(heads) == 1, heads
    store.engine.dispose()


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    load_every_table_module()
    store = Store.open(database_url)
    try:
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, Base.metadata)
        # Simulator tables belong to workspaces.local, created by it, not by migrations.
        assert differences == []
    finally:
        store.engine.dispose()


def test_migrating_twice_changes_nothing(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    migrate(store.engine)
    store.engine.dispose()
