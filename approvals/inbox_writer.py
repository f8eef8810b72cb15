"""Group commit for the acks: the edge's side of the inbox (`approvals.inbox`).

Every arrival waiting when the writer gets round to it goes into the inbox in one
statement, and each ack is sent only once its own row has committed. The event loop writes
itself, on either database: on PostgreSQL here (`PostgresInboxWriter`), on SQLite in
`approvals.sqlite_inbox_writer` (`SqliteInboxWriter`); `acks_writer` picks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import create_engine

from approvals.inbox import LEASE
from approvals.inbox_accept import (
    KEEP_DEADLINE,
    Arrival,
    accept_statement,
    ids_in_order,
    received_at_bound,
)
from approvals.sqlite_inbox_writer import SqliteInboxWriter
from approvals.store import psycopg_arguments
from approvals.tables import InboxRow

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

__all__ = ["KEEP_DEADLINE", "AcksWriter", "KeepUnconfirmed", "PostgresInboxWriter", "acks_writer"]


class KeepUnconfirmed(Exception):
    """The database did not answer in time: the items may have been kept or not. (Kept,
    a worker handles them as usual; a retried delivery finds its key taken.)"""


class AcksWriter(Protocol):
    """What the edge needs of the acks' group commit, on either database."""

    batches: int  # commits made, for the benchmark and the tests
    written: int  # arrivals they kept or found repeated

    def keep(self, arrival: Arrival) -> asyncio.Future[int | None]: ...

    def close(self) -> None: ...


def acks_writer(url: str, now: Callable[[], datetime], *, lease: timedelta = LEASE) -> AcksWriter:
    """The acks' group commit for this database, on the event loop either way. `lease`: how
    long an item accepted already claimed (by the edge) is held before a worker may take it."""
    if url.startswith("postgresql"):
        return PostgresInboxWriter(url, now, lease=lease)
    return SqliteInboxWriter(url, now, lease=lease)


class PostgresInboxWriter:
    """Group commit for the acks on the event loop itself, for PostgreSQL.

    Every arrival waiting when the last batch is written goes into the next one, one
    statement on one connection kept in autocommit (`accept_statement`), awaited by a
    coroutine the first arrival starts. Nothing crosses threads: a writer thread's
    hand-over (a queue, the interpreter lock passed back and forth, the loop woken with
    the outcomes) cost the acking process more CPU than the statement itself
    (bench/ack_latency.py). Each ack still waits for its own batch's commit, which waits
    for the WAL flush.

    The connection belongs to the loop it was opened on; on another loop (a test's next
    one) a new one is opened. A connection that fails is dropped, and the batch is tried
    once more on a fresh one, as `in_transaction` does: a batch that did commit before the
    failure finds its keys taken, and its rows are told by the instant they were received
    (`_kept_by_the_first_attempt`), not as repeats.

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
        now = self._now()
        statement, parameters, keys = accept_statement(
            self._dialect, arrivals, now, lease=self._lease, numbered=True
        )
        import psycopg

        for attempt in (1, 2):
            connection = await self._open_connection()
            try:
                self._statement_sent = True
                cursor = psycopg.AsyncRawCursor(connection)  # `$n` placeholders, as they are
                await cursor.execute(statement, parameters)
                ids = ids_in_order(keys, await cursor.fetchall())
                if attempt == 2 and None in ids:
                    ids = await self._kept_by_the_first_attempt(cursor, keys, ids, now)
                return ids
            except psycopg.OperationalError:
                if not connection.broken and not connection.closed:
                    raise  # the database refused the statement: trying again changes nothing
                self._drop_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _kept_by_the_first_attempt(
        self,
        cursor: psycopg.AsyncRawCursor[Any],
        keys: list[str],
        ids: list[int | None],
        now: datetime,
    ) -> list[int | None]:
        """`ids` with the rows the first attempt kept: its statement may have committed
        before its connection broke, and the retry then found their keys taken. Told as
        repeats, their acks would be right, but the edge would not run the trigger-window
        work of an item it holds (a modal), and a worker would open it after the lease, on
        an expired trigger. The first attempt's rows, not a repeat's, are the ones received
        at the batch's own instant."""
        missing = sorted({key for key, item_id in zip(keys, ids, strict=True) if item_id is None})
        await cursor.execute(
            f"SELECT delivery_key, id FROM {InboxRow.__tablename__} "
            "WHERE delivery_key = ANY($1) AND received_at = $2",
            [missing, received_at_bound(self._dialect, now)],
        )
        found: dict[str, int] = {key: int(item_id) for key, item_id in await cursor.fetchall()}
        given = {key for key, item_id in zip(keys, ids, strict=True) if item_id is not None}
        kept: list[int | None] = []
        for key, item_id in zip(keys, ids, strict=True):
            if item_id is None and key in found and key not in given:
                item_id = found[key]  # a key twice in the batch: the second stays a repeat
                given.add(key)
            kept.append(item_id)
        return kept

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
