"""The acks' group commit on the event loop (`PostgresInboxWriter`, PostgreSQL): arrivals that
wait together are kept in one statement, each ack learns its own outcome, a connection the
database dropped is replaced, and no ack is told "kept" for a row that is not."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from approvals import inbox
from approvals.inbox_accept import Arrival
from approvals.inbox_writer import KEEP_DEADLINE, KeepUnconfirmed, PostgresInboxWriter
from approvals.store import Store
from approvals.tables import InboxStatus
from tests.conftest import postgres_schema_url
from tests.slack.conftest import wait_for
from workspaces.clock import ManualClock

pytestmark = pytest.mark.postgres


@pytest.fixture
def store() -> Iterator[Store]:
    schemas = postgres_schema_url()
    opened = Store.open(next(schemas))
    yield opened
    opened.engine.dispose()
    schemas.close()


def url_of(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def test_a_connection_the_database_dropped_is_replaced_and_the_batch_kept(
    store: Store, clock: ManualClock
) -> None:
    writer = PostgresInboxWriter(url_of(store), clock.now)

    async def scenario() -> tuple[int | None, int | None]:
        before = await writer.keep(Arrival("before", "h", {}))
        with store.engine.begin() as connection:  # a database restart, for this connection
            terminated = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND query LIKE '%INSERT INTO inbox%'"
                )
            ).scalar()
        assert terminated == 1
        after = await writer.keep(Arrival("after", "h", {}))
        return before, after

    try:
        before, after = asyncio.run(scenario())
    finally:
        writer.close()
    assert before is not None and after is not None and after != before
    keys = {item.delivery_key for item in inbox.claim(store, "w", clock.now(), limit=10)}
    assert keys == {"before", "after"}


def test_every_waiting_ack_hears_when_its_group_cannot_be_kept(clock: ManualClock) -> None:
    writer = PostgresInboxWriter("postgresql+psycopg://nobody@127.0.0.1:9/none", clock.now)

    async def arrive() -> list[BaseException | int | None]:
        kept = [writer.keep(Arrival(f"k{n}", "h", {})) for n in range(3)]
        return list(await asyncio.gather(*kept, return_exceptions=True))

    outcomes = asyncio.run(arrive())
    writer.close()
    assert all(isinstance(outcome, Exception) for outcome in outcomes)


def test_a_closed_writer_takes_nothing_more(store: Store, clock: ManualClock) -> None:
    writer = PostgresInboxWriter(url_of(store), clock.now)

    async def arrive() -> None:
        assert await writer.keep(Arrival("k", "h", {})) is not None
        writer.close()
        with pytest.raises(RuntimeError, match="closed"):
            await writer.keep(Arrival("late", "h", {}))

    asyncio.run(arrive())
    [item] = inbox.claim(store, "w", clock.now(), limit=10)
    assert item.delivery_key == "k"
    with store.engine.connect() as connection:
        status = connection.execute(text("SELECT status FROM inbox")).scalar()
    assert status == InboxStatus.RUNNING.value


def test_an_ack_follows_a_commit_that_waited_for_the_disk(store: Store, clock: ManualClock) -> None:
    """Nothing is acknowledged that a crash could lose: when the ack's future resolves, the
    row is visible to any other connection, and the connection that wrote it commits
    durably (the workers' claims may skip the WAL wait; the acks' inserts may not)."""
    writer = PostgresInboxWriter(url_of(store), clock.now)

    async def ack() -> tuple[int | None, str]:
        kept = await writer.keep(Arrival("k", "h", {"n": 1}))
        with store.engine.connect() as other:  # at the moment the ack would be sent
            assert other.execute(text("SELECT count(*) FROM inbox")).scalar() == 1
        # The writer's own connection, the one the ack waited on.
        cursor = await (await writer._open_connection()).execute("SHOW synchronous_commit")
        setting = await cursor.fetchone()
        assert setting is not None
        return kept, str(setting[0])

    try:
        kept, setting = asyncio.run(ack())
    finally:
        writer.close()
    assert kept is not None and setting == "on"


# The acks' inserts waiting for a lock on this schema's inbox (`inbox` resolves through the
# connection's search path), not every schema's: tests running beside this one hold some.
HELD_INSERTS = text(
    "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
    "WHERE relation = 'inbox'::regclass AND NOT granted "
    "AND query LIKE 'WITH kept AS (INSERT INTO inbox%'"
)


def test_the_acks_deadline_leaves_room_in_slacks_three_seconds() -> None:
    assert KEEP_DEADLINE <= 2.0  # and the ack itself, and the network, take the rest


def test_a_host_that_never_answers_fails_the_acks_by_the_deadline_as_not_kept(
    clock: ManualClock,
) -> None:
    """A database host gone dark: TCP connects (the kernel's backlog takes it) but nothing
    ever answers. libpq alone would wait as long as TCP does (here our `connect_timeout`,
    5 s, as psycopg's own error); the acks hear at the writer's deadline, as a
    `ConnectionError`, that nothing was kept."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/none"
        writer = PostgresInboxWriter(url, clock.now, deadline=0.5)

        async def arrive() -> list[BaseException | int | None]:
            kept = [writer.keep(Arrival(f"k{n}", "h", {})) for n in range(3)]
            return list(await asyncio.gather(*kept, return_exceptions=True))

        outcomes = asyncio.run(arrive())
        writer.close()
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes), outcomes
    assert "could not connect to the database within 0.5 s" in str(outcomes[0])


def test_a_statement_the_database_holds_fails_its_acks_as_unconfirmed_and_is_cancelled(
    store: Store, clock: ManualClock
) -> None:
    """The statement reached the database and waits there (a lock; a host that stopped
    answering mid-statement looks the same from here): its acks cannot be told "kept" nor
    "not kept". The writer stops waiting at the deadline, while the lock is still held,
    the server cancels the statement (so nothing is kept behind the person's back), and
    the next batch is written on a fresh connection."""
    writer = PostgresInboxWriter(url_of(store), clock.now, deadline=0.5)
    locked, release = threading.Event(), threading.Event()

    def hold_the_table() -> None:
        with store.engine.begin() as connection:
            connection.execute(text("LOCK TABLE inbox IN SHARE MODE"))  # inserts wait
            locked.set()
            release.wait(30)

    def held_inserts() -> int:
        with store.engine.connect() as connection:
            return int(connection.execute(HELD_INSERTS).scalar() or 0)

    holder = threading.Thread(target=hold_the_table)

    async def scenario() -> tuple[list[BaseException | int | None], float, int | None]:
        assert await writer.keep(Arrival("before", "h", {})) is not None  # connected
        holder.start()
        assert await asyncio.to_thread(locked.wait, 10)
        started = time.monotonic()
        held = [writer.keep(Arrival(f"held{n}", "h", {})) for n in range(3)]
        # Only the deadline can end these: the lock is held until they have.
        outcomes = list(await asyncio.gather(*held, return_exceptions=True))
        waited = time.monotonic() - started
        await asyncio.to_thread(
            wait_for, lambda: held_inserts() == 0, what="the held insert cancelled"
        )
        release.set()
        await asyncio.to_thread(holder.join, 10)
        after = await writer.keep(Arrival("after", "h", {}))
        return outcomes, waited, after

    try:
        outcomes, waited, after = asyncio.run(scenario())
    finally:
        release.set()
        writer.close()
    assert waited >= 0.5  # not given up before the deadline
    assert all(isinstance(outcome, KeepUnconfirmed) for outcome in outcomes), outcomes
    assert after is not None
    with store.engine.connect() as connection:
        keys = connection.execute(text("SELECT delivery_key FROM inbox ORDER BY id")).scalars()
        assert list(keys) == ["before", "after"]  # the held statement was cancelled


class AnswerLosingProxy:
    """A TCP proxy to PostgreSQL that, once, forwards the acks' insert and then drops the
    connection instead of forwarding the answer: the statement committed (autocommit), but
    the writer hears only that its connection broke."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.answers_lost = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            insert_sent = threading.Event()
            threading.Thread(
                target=self._pipe, args=(client, server, insert_sent, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(server, client, insert_sent, False), daemon=True
            ).start()

    def _pipe(
        self, source: socket.socket, sink: socket.socket, insert_sent: threading.Event, out: bool
    ) -> None:
        try:
            while chunk := source.recv(65536):
                if out and b"INSERT INTO inbox" in chunk and self.answers_lost == 0:
                    insert_sent.set()
                elif not out and insert_sent.is_set() and self.answers_lost == 0:
                    self.answers_lost += 1
                    time.sleep(0.2)  # the commit is the server's before it answers; be sure
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


def test_an_item_kept_by_a_statement_whose_answer_was_lost_is_not_told_as_a_repeat(
    store: Store, clock: ManualClock
) -> None:
    """The insert committed, then the connection broke before its answer came: the retry
    finds the keys taken. The arrival is still told its own id (the edge must run a modal's
    item it holds), while a key sent twice in the batch stays a repeat the second time."""
    proxy = AnswerLosingProxy(store.engine.url.port or 5432)
    through_proxy = store.engine.url.set(host="127.0.0.1", port=proxy.port)
    writer = PostgresInboxWriter(through_proxy.render_as_string(hide_password=False), clock.now)

    async def arrive() -> list[int | None]:
        kept = [
            writer.keep(Arrival("modal", "h", {}, claimed_by="edge-1")),
            writer.keep(Arrival("modal", "h", {}, claimed_by="edge-1")),
            writer.keep(Arrival("command", "h", {})),
        ]
        return list(await asyncio.gather(*kept))

    try:
        modal, modal_again, command = asyncio.run(arrive())
    finally:
        writer.close()
        proxy.close()
    assert proxy.answers_lost == 1
    with store.engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT delivery_key, id FROM inbox")).all())
    assert (modal, modal_again, command) == (rows["modal"], None, rows["command"])
