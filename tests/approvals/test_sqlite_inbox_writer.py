"""The acks' group commit on SQLite, on the event loop (`SqliteInboxWriter`): arrivals that
wait together are kept in one transaction, each ack learns its own outcome, the loop goes
on serving while another process holds the write lock, and a batch that cannot be kept in
time is refused with nothing of it written."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from approvals.inbox_accept import Arrival
from approvals.sqlite_inbox_writer import SqliteInboxWriter, WriteLockTimeout
from approvals.store import Store
from tests.approvals.sqlite_locks import LOCKS, Lock, held_by_another_process, let_go
from workspaces.clock import ManualClock


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    opened = Store.open(sqlite_url)
    yield opened
    opened.engine.dispose()


def path_of(store: Store) -> str:
    database = store.engine.url.database
    assert database
    return database


def url_of(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def keys_kept(store: Store) -> list[str]:
    with store.engine.connect() as connection:
        return [key for (key,) in connection.execute(text("SELECT delivery_key FROM inbox"))]


@pytest.mark.parametrize("lock", LOCKS)
def test_while_another_process_holds_the_lock_the_loop_serves_on_and_the_batch_waits(
    store: Store, clock: ManualClock, lock: Lock
) -> None:
    """The writer tries again on the loop rather than blocking it: other requests are
    served meanwhile, and the arrivals are kept once the holder lets go, in one batch."""
    writer = SqliteInboxWriter(url_of(store), clock.now, deadline=30)

    async def scenario(holder: subprocess.Popen[str]) -> list[int | None]:
        kept = [writer.keep(Arrival(f"k{n}", "h", {})) for n in range(3)]
        turns_of_the_loop = 0
        while turns_of_the_loop < 50:
            await asyncio.sleep(0.001)  # another request served
            turns_of_the_loop += 1
        assert not any(future.done() for future in kept)
        assert writer.lock_waits > 0
        kept.append(writer.keep(Arrival("late", "h", {})))  # joins the waiting batch
        await asyncio.get_running_loop().run_in_executor(None, let_go, holder)
        return list(await asyncio.wait_for(asyncio.gather(*kept), 10))

    try:
        with held_by_another_process(path_of(store), lock) as holder:
            ids = asyncio.run(scenario(holder))
    finally:
        writer.close()
    assert all(item_id is not None for item_id in ids)
    assert writer.batches == 1
    assert sorted(keys_kept(store)) == ["k0", "k1", "k2", "late"]


@pytest.mark.parametrize("lock", LOCKS)
def test_a_batch_the_lock_is_held_from_past_the_deadline_is_refused_and_none_of_it_kept(
    store: Store, clock: ManualClock, lock: Lock
) -> None:
    writer = SqliteInboxWriter(url_of(store), clock.now, deadline=0.3)

    async def keep_both() -> list[int | BaseException | None]:
        kept = [writer.keep(Arrival(key, "h", {})) for key in ("a", "b")]
        return list(await asyncio.gather(*kept, return_exceptions=True))

    async def keep(key: str) -> int | None:
        return await writer.keep(Arrival(key, "h", {}))

    try:
        with held_by_another_process(path_of(store), lock):
            outcomes = asyncio.run(keep_both())
        assert all(isinstance(outcome, WriteLockTimeout) for outcome in outcomes)
        assert keys_kept(store) == []  # nothing the acks were told was refused
        assert asyncio.run(keep("after")) is not None  # the lock free, the next goes in
    finally:
        writer.close()
    assert keys_kept(store) == ["after"]


def test_a_batch_the_database_refuses_fails_and_the_next_is_kept_on_a_new_connection(
    store: Store, clock: ManualClock
) -> None:
    writer = SqliteInboxWriter(url_of(store), clock.now)

    async def keep(key: str) -> int | None:
        return await writer.keep(Arrival(key, "h", {}))

    try:
        assert asyncio.run(keep("before")) is not None
        with store.engine.begin() as connection:
            connection.execute(text("ALTER TABLE inbox RENAME TO inbox_away"))
        with pytest.raises(Exception, match="no such table"):
            asyncio.run(keep("while away"))
        with store.engine.begin() as connection:
            connection.execute(text("ALTER TABLE inbox_away RENAME TO inbox"))
        assert asyncio.run(keep("after")) is not None
    finally:
        writer.close()
    assert sorted(keys_kept(store)) == ["after", "before"]


def test_an_arrival_whose_ack_was_given_up_before_its_batch_is_not_kept(
    store: Store, clock: ManualClock
) -> None:
    """The client went away (Slack gave up on the ack): it will send the delivery again,
    and the item must not be handled behind an ack nobody received."""
    writer = SqliteInboxWriter(url_of(store), clock.now)

    async def scenario() -> int | None:
        abandoned = writer.keep(Arrival("abandoned", "h", {}))
        abandoned.cancel()
        return await writer.keep(Arrival("kept", "h", {}))

    try:
        assert asyncio.run(scenario()) is not None
    finally:
        writer.close()
    assert keys_kept(store) == ["kept"]


def test_a_closed_writer_refuses_new_arrivals(store: Store, clock: ManualClock) -> None:
    writer = SqliteInboxWriter(url_of(store), clock.now)
    writer.close()

    async def keep() -> int | None:
        return await writer.keep(Arrival("late", "h", {}))

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(keep())
    assert keys_kept(store) == []


def test_arrivals_left_waiting_by_a_loop_that_ended_do_not_hold_up_the_next_loop(
    store: Store, clock: ManualClock
) -> None:
    writer = SqliteInboxWriter(url_of(store), clock.now, deadline=30)

    async def leave_one_waiting() -> None:
        writer.keep(Arrival("left", "h", {}))  # the loop ends before its write runs

    async def keep(key: str) -> int | None:
        return await asyncio.wait_for(writer.keep(Arrival(key, "h", {})), 10)

    try:
        with held_by_another_process(path_of(store), "the writers' turn") as holder:
            asyncio.run(leave_one_waiting())
            let_go(holder)
        assert asyncio.run(keep("next")) is not None
    finally:
        writer.close()
    assert keys_kept(store) == ["next"]
