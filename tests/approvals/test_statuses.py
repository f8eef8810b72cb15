"""Grant and outbox statuses are enums in the code and the same plain words in the store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import StatementError

from approvals import outbox
from approvals.store import Store
from approvals.tables import OutboxRow, OutboxStatus

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def queued_store(database_url: str) -> Store:
    store = Store.open(database_url)
    with store.transaction() as session:
        outbox.notify_person(session, "alice", "hello", now=NOW)
    return store


def test_a_status_is_stored_as_its_plain_word_and_read_back_as_the_enum(
    database_url: str,
) -> None:
    store = queued_store(database_url)
    try:
        with store.transaction() as session:
            stored = session.execute(text("SELECT status FROM outbox")).scalar_one()
            row = session.scalars(select(OutboxRow)).one()
        assert stored == "pending"
        assert row.status is OutboxStatus.PENDING
    finally:
        store.engine.dispose()


def test_a_status_word_the_enum_does_not_know_is_refused_on_write(sqlite_url: str) -> None:
    store = queued_store(sqlite_url)
    try:
        with pytest.raises(StatementError, match="delivered"), store.transaction() as session:
            session.execute(update(OutboxRow).values(status="delivered"))
    finally:
        store.engine.dispose()
