"""On PostgreSQL a worker hears of new inbox items by `LISTEN`/`NOTIFY`, not by its poll:
with the poll stretched to two minutes, an item accepted by another process is handled at
once, and only the notification can have woken the worker."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from approvals import inbox, inbox_accept
from approvals.inbox import InboxItem
from approvals.store import Store
from bot.work import InboxWorker
from tests.conftest import postgres_schema_url
from tests.slack.conftest import wait_for
from workspaces.clock import SystemClock

pytestmark = pytest.mark.postgres

POLL_NEVER = 120.0  # seconds: far beyond the test's bounds


def listening(store: Store) -> bool:
    with store.engine.connect() as connection:
        found = connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE query = :listen AND pid <> pg_backend_pid()"
            ),
            {"listen": f"LISTEN {inbox.NOTIFY_CHANNEL}"},
        )
    return bool(found)


def test_a_new_item_wakes_a_worker_that_would_poll_in_two_minutes() -> None:
    schemas = postgres_schema_url()
    store = Store.open(next(schemas))
    clock = SystemClock()
    handled = threading.Event()

    def record(item: InboxItem) -> None:
        handled.set()

    worker = InboxWorker(store, clock, {"record": record}, poll=POLL_NEVER)
    # The acking process: another engine, as the edge has its own.
    edge = Store.open(store.engine.url.render_as_string(hide_password=False), run_migrations=False)
    try:
        worker.start()
        wait_for(lambda: listening(store) or None, timeout=10, what="the worker's LISTEN")
        time.sleep(0.5)  # the wake-up LISTEN itself gives is spent: the loop now waits
        assert not handled.is_set()

        with edge.engine.begin() as connection:
            inbox_accept.accept_many(
                connection, [inbox_accept.Arrival("k1", "record", {})], clock.now()
            )
        # Ten seconds is a liveness bound: the poll alone would take two minutes.
        assert handled.wait(10), "the worker slept through the notification"
    finally:
        worker.stop(grace=1)
        edge.engine.dispose()
        store.engine.dispose()
        schemas.close()


def test_the_acks_own_writer_wakes_a_worker_too() -> None:
    """The edge's path: its writer on the event loop commits each batch by itself, the
    notification inside the batch's one statement."""
    import asyncio

    from approvals.inbox_writer import PostgresInboxWriter, acks_writer

    schemas = postgres_schema_url()
    store = Store.open(next(schemas))
    clock = SystemClock()
    handled = threading.Event()
    worker = InboxWorker(store, clock, {"record": lambda item: handled.set()}, poll=POLL_NEVER)
    writer = acks_writer(store.engine.url.render_as_string(hide_password=False), clock.now)
    assert isinstance(writer, PostgresInboxWriter)
    try:
        worker.start()
        wait_for(lambda: listening(store) or None, timeout=10, what="the worker's LISTEN")
        time.sleep(0.5)
        assert not handled.is_set()

        async def ack() -> int | None:
            return await writer.keep(inbox_accept.Arrival("k1", "record", {}))

        assert asyncio.run(ack()) is not None
        assert handled.wait(10), "the worker slept through the notification"
    finally:
        worker.stop(grace=1)
        writer.close()
        store.engine.dispose()
        schemas.close()
