"""Group commit for the acks: the edge's side of the inbox (`approvals.inbox`).

Every arrival waiting when the writer is free goes into the inbox in one statement, and
each ack is sent only once its own row has committed: on PostgreSQL by the event loop
itself (`LoopInboxWriter`), on SQLite by a thread (`InboxWriter`; `acks_writer` picks)."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from approvals.inbox import LEASE, in_transaction
from approvals.inbox_accept import Arrival, accept_many, accept_statement, ids_in_order
from approvals.store import make_writer_engine, psycopg_arguments

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
Resolve = Callable[[int | None, BaseException | None], None]

# Slack waits 3 s for an ack. A batch the database has not answered by then (its host gone
# dark, a lock held) would make every ack behind it late, for as long as TCP waits: minutes.
KEEP_DEADLINE = 2.0


class KeepUnconfirmed(Exception):
    """The database did not answer in time: the items may have been kept or not. (Kept,
    a worker handles them as usual; a retried delivery finds its key taken.)"""


class InboxWriter:
    """Group commit for the acks on a thread (the edge uses it on SQLite, whose driver
    blocks; `LoopInboxWriter` on PostgreSQL): every arrival waiting when the writer is free
    goes into the inbox in one statement (`accept_many`), however many acks wait on it.

    A commit costs a round trip and, on PostgreSQL, a WAL flush; paid once per batch
    instead of once per ack, the acking process stays close to a bare Slack app under load
    (bench/ack_latency.py). Nothing is acknowledged before its batch has committed: each
    arrival's `resolve` is called with its id (None for a repeat) or the error, only then.

    Its engine skips the pre-ping (a round trip per checkout); after a database restart
    the first use fails, the pool is invalidated, and one retry takes a fresh connection.
    """

    def __init__(
        self,
        engine: Engine,
        now: Callable[[], datetime],
        *,
        max_batch: int = 256,
        lease: timedelta = LEASE,
        owns_engine: bool = False,
    ) -> None:
        self._engine = engine
        self._owns_engine = owns_engine  # disposed of by `close`
        self._now = now
        self._max_batch = max_batch
        self._lease = lease
        self._queue: queue.SimpleQueue[tuple[Arrival, Resolve] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="amlbot-inbox-writer", daemon=True)
        self._thread.start()
        self.batches = 0  # for the benchmark and the tests: commits made
        self.written = 0

    def submit(self, arrival: Arrival, resolve: Resolve) -> None:
        self._queue.put((arrival, resolve))

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._owns_engine:
            self._engine.dispose()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[tuple[Arrival, Resolve]]) -> None:
        arrivals = [arrival for arrival, _ in batch]
        try:
            ids = self._insert(arrivals)
        except Exception as failed:
            log.warning("keeping %s inbound items failed: %r", len(batch), failed)
            for _, resolve in batch:
                _call(resolve, None, failed)
            return
        self.batches += 1
        self.written += len(batch)
        for (_, resolve), item_id in zip(batch, ids, strict=True):
            _call(resolve, item_id, None)

    def _insert(self, arrivals: list[Arrival]) -> list[int | None]:
        return in_transaction(
            self._engine,
            lambda connection: accept_many(connection, arrivals, self._now(), lease=self._lease),
        )


def _call(resolve: Resolve, item_id: int | None, error: BaseException | None) -> None:
    try:
        resolve(item_id, error)
    except Exception:
        log.exception("telling an ack its inbox write ended failed")


def acks_writer(url: str, now: Callable[[], datetime]) -> InboxWriter | LoopInboxWriter:
    """The acks' group commit for this database: on PostgreSQL on the event loop
    (`LoopInboxWriter`); on SQLite, whose driver blocks, on a thread (`InboxWriter`) with a
    writer engine of its own (`make_writer_engine`)."""
    if url.startswith("postgresql"):
        return LoopInboxWriter(url, now)
    return InboxWriter(make_writer_engine(url), now, owns_engine=True)


class LoopInboxWriter:
    """Group commit for the acks on the event loop itself, for PostgreSQL: what
    `InboxWriter` does on a thread, without the thread.

    Every arrival waiting when the last batch is written goes into the next one, one
    statement on one connection kept in autocommit (`accept_statement`), awaited by a
    coroutine the first arrival starts. Nothing crosses threads: the writer thread's
    hand-over (a queue, the interpreter lock passed back and forth, the loop woken with
    the outcomes) cost the acking process more CPU than the statement itself
    (bench/ack_latency.py). Each ack still waits for its own batch's commit, which waits
    for the WAL flush.

    The connection belongs to the loop it was opened on; on another loop (a test's next
    one) a new one is opened. A connection that fails is dropped, and the batch is tried
    once more on a fresh one, as `in_transaction` does: a batch that did commit before the
    failure finds its keys taken and answers them as repeats, and the workers claim the
    items all the same.

    A batch has `KEEP_DEADLINE` to commit, connecting included, so an ack is never held
    for as long as TCP waits on a host gone dark: past it, its acks hear `KeepUnconfirmed`
    (the statement was sent, and may have committed) or a `ConnectionError` (it was not).
    """

    def __init__(
        self,
        url: str,
        now: Callable[[], datetime],
        *,
        max_batch: int = 256,
        lease: timedelta = LEASE,
        deadline: float = KEEP_DEADLINE,
    ) -> None:
        # Connecting is bounded by the deadline too (`_insert_by_deadline`).
        self._arguments = psycopg_arguments(url)
        self._deadline = deadline
        # The bind processors of our column types, as SQLAlchemy's psycopg dialect has them
        # (the engine is never connected).
        self._dialect = create_engine(url).dialect
        self._now = now
        self._max_batch = max_batch
        self._lease = lease
        self._waiting: list[tuple[Arrival, asyncio.Future[int | None]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._connection_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._statement_sent = False  # by the batch being written: it may have committed
        self.batches = 0  # for the benchmark and the tests: commits made
        self.written = 0

    def keep(self, arrival: Arrival) -> asyncio.Future[int | None]:
        """On the event loop: a future of the arrival's inbox id once its batch has
        committed (None: a repeat), or of the error."""
        loop = asyncio.get_running_loop()
        kept: asyncio.Future[int | None] = loop.create_future()
        if self._closed:
            kept.set_exception(RuntimeError("the inbox writer is closed"))
            return kept
        self._waiting.append((arrival, kept))
        if self._writing is None:
            self._writing = loop.create_task(self._write_while_waiting())
        return kept

    def close(self) -> None:
        """Take no more arrivals; a batch being written finishes (its acks wait for it)."""
        self._closed = True
        if self._writing is None:
            self._drop_connection()

    async def _write_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    ids = await self._insert_by_deadline([arrival for arrival, _ in batch])
                except Exception as failed:
                    log.warning("keeping %s inbound items failed: %r", len(batch), failed)
                    for _, kept in batch:
                        if not kept.done():
                            kept.set_exception(failed)
                    continue
                self.batches += 1
                self.written += len(batch)
                for (_, kept), item_id in zip(batch, ids, strict=True):
                    if not kept.done():  # the ack was cancelled meanwhile
                        kept.set_result(item_id)
        finally:
            self._writing = None
            if self._closed:
                self._drop_connection()

    async def _insert_by_deadline(self, arrivals: list[Arrival]) -> list[int | None]:
        """`_insert`, or `KeepUnconfirmed` once the deadline passes. The late insert is
        cancelled (psycopg asks the server to cancel the statement, which may take seconds
        more) on its own connection, given up; the next batch opens another."""
        self._statement_sent = False
        insert = asyncio.get_running_loop().create_task(self._insert(arrivals))
        done, _ = await asyncio.wait({insert}, timeout=self._deadline)
        if done:
            return insert.result()
        sent = self._statement_sent
        abandoned, self._connection = self._connection, None
        insert.cancel()

        def close_abandoned(ended: asyncio.Task[list[int | None]]) -> None:
            if not ended.cancelled() and ended.exception() is not None:
                log.info("the abandoned inbox insert ended: %r", ended.exception())
            if abandoned is not None and not abandoned.closed:
                abandoned.pgconn.finish()

        insert.add_done_callback(close_abandoned)
        if not sent:  # still connecting: nothing reached the database
            raise ConnectionError(f"could not connect to the database within {self._deadline:g} s")
        raise KeepUnconfirmed(
            f"the database did not answer within {self._deadline:g} s "
            f"({len(arrivals)} inbound items waiting)"
        )

    async def _insert(self, arrivals: list[Arrival]) -> list[int | None]:
        statement, parameters, keys = accept_statement(
            self._dialect, arrivals, self._now(), lease=self._lease, numbered=True
        )
        import psycopg

        for attempt in (1, 2):
            connection = await self._open_connection()
            try:
                self._statement_sent = True
                cursor = psycopg.AsyncRawCursor(connection)  # `$n` placeholders, as they are
                await cursor.execute(statement, parameters)
                return ids_in_order(keys, await cursor.fetchall())
            except psycopg.OperationalError:
                if not connection.broken and not connection.closed:
                    raise  # the database refused the statement: trying again changes nothing
                self._drop_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _open_connection(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if self._connection is not None and (
            self._connection_loop is not loop or self._connection.closed
        ):
            self._drop_connection()
        if self._connection is None:
            import psycopg

            self._connection = await psycopg.AsyncConnection.connect(**self._arguments)
            self._connection_loop = loop
        return self._connection

    def _drop_connection(self) -> None:
        """Close the connection's socket without its loop (it may be gone, or another)."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            connection.pgconn.finish()
