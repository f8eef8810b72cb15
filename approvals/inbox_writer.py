"""Group commit for the acks: the edge's side of the inbox (`approvals.inbox`).

Every arrival waiting when the writer is free goes into the inbox in one transaction, and
each ack is sent only once its own row has committed."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from approvals.inbox import LEASE, in_transaction
from approvals.inbox_accept import Arrival, accept_many

log = logging.getLogger(__name__)
Resolve = Callable[[int | None, BaseException | None], None]


class InboxWriter:
    """Group commit for the acks: every arrival waiting when the writer is free goes into
    the inbox in one statement (`accept_many`), however many acks wait on it.

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
    ) -> None:
        self._engine = engine
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
