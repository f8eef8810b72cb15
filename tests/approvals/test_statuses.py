"""Statuses are enums in the code and the same plain words in the store: requests, grants,
the inbox, the outbox and drift findings."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import StatementError

from approvals import inbox_accept, outbox
from approvals.payloads import AccessPayload
from approvals.store import Store
from approvals.tables import (
    Base,
    DriftFindingRow,
    DriftStatus,
    GrantRow,
    GrantStatus,
    InboxRow,
    InboxStatus,
    OutboxRow,
    OutboxStatus,
    RequestRow,
    RequestStatus,
)

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


def test_request_inbox_and_drift_statuses_keep_the_words_rows_already_hold(
    database_url: str,
) -> None:
    store = Store.open(database_url)
    try:
        inbox_accept.keep(store, "slack:event:1", "command", {}, NOW)
        with store.transaction() as session:
            request = RequestRow(
                workspace="ml-dev",
                action="access",
                requester="alice",
                payload=AccessPayload(cluster="gpu", duration_seconds=4 * 3600.0),
                summary="gpu for 4h",
                status=RequestStatus.PENDING,
                created_at=NOW,
            )
            session.add(request)
            session.flush()
            session.add(
                DriftFindingRow(
                    workspace="ml-dev",
                    found_at=NOW,
                    kind="stray",
                    text="an assignment the bot did not make",
                    detail={},
                    status=DriftStatus.OPEN,
                )
            )
        with store.transaction() as session:
            stored = [
                session.execute(text(f"SELECT status FROM {table}")).scalar_one()
                for table in ("requests", "inbox", "drift_findings")
            ]
            read_back = [
                session.scalars(select(RequestRow.status)).one(),
                session.scalars(select(InboxRow.status)).one(),
                session.scalars(select(DriftFindingRow.status)).one(),
            ]
        assert stored == ["pending", "pending", "open"]
        assert read_back == [RequestStatus.PENDING, InboxStatus.PENDING, DriftStatus.OPEN]
        assert [type(status) for status in read_back] == [
            RequestStatus,
            InboxStatus,
            DriftStatus,
        ]
    finally:
        store.engine.dispose()


STATUS_COLUMNS: list[tuple[type[Base], type[enum.StrEnum]]] = [
    (RequestRow, RequestStatus),
    (GrantRow, GrantStatus),
    (InboxRow, InboxStatus),
    (OutboxRow, OutboxStatus),
    (DriftFindingRow, DriftStatus),
]


@pytest.mark.parametrize(("row", "statuses"), STATUS_COLUMNS, ids=lambda x: x.__name__)
def test_a_status_word_the_enum_does_not_know_is_refused_on_write(
    sqlite_url: str, row: type[Any], statuses: type[enum.StrEnum]
) -> None:
    store = queued_store(sqlite_url)
    try:
        assert "delivered" not in {status.value for status in statuses}
        with pytest.raises(StatementError, match="delivered"), store.transaction() as session:
            session.execute(update(row).values(status="delivered"))
    finally:
        store.engine.dispose()
