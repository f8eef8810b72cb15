"""Group commit for the acks on SQLite, on the event loop (`approvals.inbox_writer` has
PostgreSQL's, and picks)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from approvals.inbox import LEASE
from approvals.inbox_accept import KEEP_DEADLINE, Arrival, accept_statement, ids_in_order
from approvals.store import make_writer_engine, write_turns

log = logging.getLogger(__name__)

# Between tries at a write lock another writer holds: from 0.2 ms, doubling to at most
# 2 ms, as `make_writer_engine` polls, so a short wait is short and a long one does not spin.
FIRST_TRY_AGAIN_SECONDS = 0.0002
LAST_TRY_AGAIN_SECONDS = 0.002

Waiting = list[tuple[Arrival, "asyncio.Future[int | None]"]]


class WriteLockTimeout(TimeoutError):
    """Another writer held SQLite's write lock past the deadline: nothing was kept."""


class SqliteInboxWriter:
    """The acks' inbox inserts on SQLite, written by the event loop itself.

    SQLite runs inside this process, and a batch's insert and commit take tens of
    microseconds (the write-ahead log is not flushed to disk at commit: `make_engine`). A
    writer thread cost the acking process more than that in hand-overs: a queue, the
    interpreter lock passed back and forth, the loop woken with the outcomes (measured
    with bench/ack_cpu.py: 238 us of CPU per ack with the thread, 169 without; the bare
    Bolt app 96). So the loop writes, in one transaction, every arrival waiting when it
    gets round to it.

    It never waits for the lock: while a worker holds the writers' turn (`WriteTurns`)
    or SQLite's write lock, it tries again 0.2-2 ms later, serving other requests
    meanwhile, and what arrives meanwhile joins the batch. Nothing is acknowledged before
    its batch has committed. A batch that cannot take the lock within `deadline` is
    refused (`WriteLockTimeout`): none of it was written, so its acks can say so.
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
        # Its pragmas: no busy handler of SQLite's (a refused try answers at once), and no
        # log checkpoint inside our write turn.
        self._engine = make_writer_engine(url)
        self._turns = write_turns(self._engine)
        self._dialect = self._engine.dialect
        self._now = now
        self._max_batch = max_batch
        self._lease = lease
        self._deadline = deadline
        self._connection: Any = None  # the pool's wrapper of one sqlite3 connection
        self._waiting: Waiting = []
        self._scheduled: asyncio.Handle | None = None
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.batches = 0  # for the benchmark and the tests: commits made
        self.written = 0
        self.lock_waits = 0  # tries that found the lock taken

    def keep(self, arrival: Arrival) -> asyncio.Future[int | None]:
        """On the event loop: a future of the arrival's inbox id once its batch has
        committed (None: a repeat), or of the error."""
        loop = asyncio.get_running_loop()
        kept: asyncio.Future[int | None] = loop.create_future()
        if self._closed:
            kept.set_exception(RuntimeError("the inbox writer is closed"))
            return kept
        if self._scheduled_on is not loop:
            # A loop that ended with arrivals waiting (a test's; the edge keeps one loop):
            # its acks were never sent, and its scheduled write will never run.
            self._waiting, self._scheduled = [], None
        self._waiting.append((arrival, kept))
        if self._scheduled is None:
            self._write_soon(loop)
        return kept

    def close(self) -> None:
        """Take no more arrivals. A batch waiting for the lock is still written while the
        loop runs; the connection is closed after it."""
        self._closed = True
        if self._scheduled is None:
            self._close_connection()

    def _write_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        # Soon, not now: the arrivals of this turn of the loop go in together.
        give_up_at = time.monotonic() + self._deadline
        self._scheduled_on = loop
        self._scheduled = loop.call_soon(self._write, loop, give_up_at, FIRST_TRY_AGAIN_SECONDS)

    def _write(self, loop: asyncio.AbstractEventLoop, give_up_at: float, pause: float) -> None:
        self._scheduled = None
        # An ack given up meanwhile (its client went away) is not kept: Slack sends again.
        self._waiting = [(arrival, kept) for arrival, kept in self._waiting if not kept.done()]
        if self._waiting and self._took_the_lock(give_up_at):
            batch, self._waiting = (
                self._waiting[: self._max_batch],
                self._waiting[self._max_batch :],
            )
            self._insert(batch)
        elif self._waiting:
            self.lock_waits += 1
            self._scheduled = loop.call_later(
                pause, self._write, loop, give_up_at, min(pause * 2, LAST_TRY_AGAIN_SECONDS)
            )
            return
        if self._waiting:
            self._write_soon(loop)
        elif self._closed:
            self._close_connection()

    def _took_the_lock(self, give_up_at: float) -> bool:
        """The writers' turn and SQLite's write lock, in a transaction begun; False while
        another writer holds either. Past the deadline, or when the database fails, the
        waiting arrivals are told so, and none wait any more."""
        if self._turns is not None and not self._turns.try_take():
            return self._give_up_if_late(give_up_at)
        try:
            self._driver().execute("BEGIN IMMEDIATE")
        except Exception as refused:
            if self._turns is not None:
                self._turns.give_back()
            if isinstance(refused, sqlite3.OperationalError) and "locked" in str(refused):
                return self._give_up_if_late(give_up_at)
            self._drop_connection()
            self._fail_waiting(refused)
            return False
        return True

    def _give_up_if_late(self, give_up_at: float) -> bool:
        if time.monotonic() < give_up_at:
            return False
        self._fail_waiting(
            WriteLockTimeout(
                f"another writer held SQLite's write lock for {self._deadline:g} s "
                f"({len(self._waiting)} inbound items waiting)"
            )
        )
        return False

    def _insert(self, batch: Waiting) -> None:
        """In the transaction `_took_the_lock` began: the batch, committed, and its acks
        told their ids."""
        connection = self._driver()
        statement, parameters, keys = accept_statement(
            self._dialect, [arrival for arrival, _ in batch], self._now(), lease=self._lease
        )
        try:
            ids = ids_in_order(keys, connection.execute(statement, parameters).fetchall())
            connection.execute("COMMIT")
        except Exception as failed:
            self._drop_connection()  # its transaction, if any, rolls back as it closes
            self._tell(batch, failed)
            return
        finally:
            if self._turns is not None:
                self._turns.give_back()
        self.batches += 1
        self.written += len(batch)
        for (_, kept), item_id in zip(batch, ids, strict=True):
            if not kept.done():
                kept.set_result(item_id)

    def _fail_waiting(self, failed: BaseException) -> None:
        waiting, self._waiting = self._waiting, []
        self._tell(waiting, failed)

    def _tell(self, batch: Waiting, failed: BaseException) -> None:
        log.warning("keeping %s inbound items failed: %r", len(batch), failed)
        for _, kept in batch:
            if not kept.done():
                kept.set_exception(failed)

    def _driver(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        driver: sqlite3.Connection = self._connection.dbapi_connection
        return driver

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.invalidate()  # not back into the pool: the next batch opens another

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        self._engine.dispose()
