"""Workers: claim inbox items and run their handlers, anywhere the database is reachable.

`InboxWorker` is a claim loop and a thread pool (each handler may wait minutes on Azure, so
a thread each) plus a heartbeat that renews the leases of what its threads are running. It
wakes when told (`wake()`, the edge in the same process), on PostgreSQL when an insert is
announced (`LISTEN amlbot_inbox`), and otherwise polls: the poll is the safety net that
also picks up items whose worker died.

Shutting down (`stop`): claim nothing more, give in-flight work `grace` seconds to finish,
then release what is left so another worker takes it at once instead of waiting out the
lease. A handler still running then may finish later as well; handlers are idempotent.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from approvals import inbox
from approvals.correlation import delivering
from approvals.inbox import InboxItem
from approvals.store import Store, claims_store, psycopg_arguments
from approvals.tables import InboxStatus
from bot.lease_keeper import LeaseKeeper
from bot.metrics import Metrics
from workspaces.clock import Clock

log = logging.getLogger(__name__)

Handler = Callable[[InboxItem], None]
# Told when an item is dead-lettered: (item, error id), to tell the person and the leads.
DeadLetterHook = Callable[[InboxItem, str], None]

POLL_POSTGRES = 1.0
# SQLite has no NOTIFY and the edge is another process: look often, with a read that costs
# tens of microseconds and takes no lock (`inbox.anything_due`), and claim only then.
POLL_SQLITE = 0.025
# At most one claim round per this many seconds (see `InboxWorker._loop`): a reply waits
# at most this much longer, and a busy worker makes a fraction of the transactions.
CLAIM_PACE = 0.010


def holder_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class AbandonedItem(Exception):
    """An item every holder gave up on without a word: its lease ran out `max_attempts`
    times (its worker died each time, or could not reach the database to say otherwise)."""


class InboxWorker:
    name = "inbox"

    def __init__(
        self,
        store: Store,
        clock: Clock,
        handlers: Mapping[str, Handler],
        *,
        threads: int = 16,
        lease: timedelta = inbox.LEASE,
        max_attempts: int = inbox.MAX_ATTEMPTS,
        on_dead: DeadLetterHook | None = None,
        on_handled: Callable[[], None] | None = None,
        poll: float | None = None,
        holder: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.inbox_store = claims_store(store, threads)
        self.metrics = metrics
        self.clock = clock
        self.handlers = handlers
        self.threads = threads
        self.lease = lease
        self.max_attempts = max_attempts
        self.on_dead = on_dead
        # After each handled item, e.g. to wake the outbox so its replies go out at once.
        self.on_handled = on_handled or (lambda: None)
        self.holder = holder or holder_id()
        postgres = store.engine.dialect.name == "postgresql"
        self.poll = poll if poll is not None else (POLL_POSTGRES if postgres else POLL_SQLITE)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="amlbot-work")
        self._in_flight: dict[int, InboxItem] = {}
        # Handled, and marked done with the next claim (`inbox.claim(completing=...)`).
        self._handled: list[int] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._loop_thread: threading.Thread | None = None
        # Renews what the threads run and what they handled but the loop has not yet marked
        # done; it runs until `stop` has released what is left, grace included.
        self._heartbeat = LeaseKeeper(self.inbox_store, self.holder, clock, lease, self._held)
        self._listener: _PostgresListener | None = None
        self.last_claim_at: float | None = None  # time.monotonic() of the last claim round

    # ---- life ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.store.engine.dialect.name == "postgresql":
            self._listener = _PostgresListener(self.store, self._wake)
            self._listener.start()
        self._loop_thread = threading.Thread(target=self._loop, name="amlbot-claim", daemon=True)
        self._loop_thread.start()
        self._heartbeat.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace: float = 20.0) -> None:
        """Stop claiming; let in-flight items finish within `grace` seconds, then release
        the rest for another worker."""
        self._stopping.set()
        self._wake.set()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=5)
        deadline = time.monotonic() + grace
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        handled = self._take_handled()
        if handled:
            try:
                inbox.claim(
                    self.inbox_store, self.holder, self.clock.now(), limit=0, completing=handled
                )
            except Exception:
                log.exception(
                    "shutting down: marking %s handled inbox items done failed; they run "
                    "again (to no effect) once their leases run out",
                    len(handled),
                )
        self._release(self._in_flight_ids(), "unfinished")
        # Only now: until released, what the threads still run must keep its lease.
        self._heartbeat.stop()
        if self._listener is not None:
            self._listener.stop()
        if self.inbox_store is not self.store:
            self.inbox_store.engine.dispose()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _release(self, item_ids: list[int], which: str) -> None:
        """Give items back so another worker takes them at once. If the database cannot be
        reached, they are taken again once their leases run out."""
        if not item_ids:
            return
        try:
            released = inbox.release(self.inbox_store, item_ids, self.holder, self.clock.now())
        except Exception:
            log.exception(
                "shutting down: releasing %s %s inbox items failed; other workers take them "
                "once their leases run out",
                len(item_ids),
                which,
            )
            return
        log.warning("shutting down: released %s %s inbox items to other workers", released, which)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def ready(self) -> bool:
        """Claiming: the loop runs and has gone round recently."""
        alive = self._loop_thread is not None and self._loop_thread.is_alive()
        recent = self.last_claim_at is not None and time.monotonic() - self.last_claim_at < max(
            30.0, 10 * self.poll
        )
        return alive and recent and not self._stopping.is_set()

    # ---- the loops -----------------------------------------------------------------------

    def _in_flight_ids(self) -> list[int]:
        with self._lock:
            return list(self._in_flight)

    def _take_handled(self) -> list[int]:
        with self._lock:
            handled, self._handled = self._handled, []
        return handled

    def _give_back_handled(self, handled: list[int]) -> None:
        with self._lock:
            self._handled[:0] = handled

    def _loop(self) -> None:
        round_started = -CLAIM_PACE
        while not self._stopping.is_set():
            # Paced: under load every finished item wakes the loop, and a round each would
            # cost a claim transaction per item; one round per pace takes what finished and
            # what arrived meanwhile together. After a quiet spell it claims at once.
            wait = round_started + CLAIM_PACE - time.monotonic()
            if wait > 0:
                self._stopping.wait(wait)
            round_started = time.monotonic()
            free = self.threads - self.in_flight()
            handled = self._take_handled()
            items: list[InboxItem] = []
            if free > 0 or handled:
                try:
                    # A read, on the store: the claims' engine takes the write lock.
                    if (
                        handled
                        or self._listener is not None
                        or inbox.anything_due(self.store, self.clock.now())
                    ):
                        items = inbox.claim(
                            self.inbox_store,
                            self.holder,
                            self.clock.now(),
                            limit=max(free, 0),
                            lease=self.lease,
                            completing=handled,
                        )
                except Exception:
                    log.exception("claiming inbox items failed; trying again shortly")
                    # Still ours and leased (the heartbeat renews them): marked next time.
                    self._give_back_handled(handled)
            # Also when every thread is busy (Azure stalling): the loop is well, and a
            # readiness probe must not take the replica out for waiting on Azure.
            self.last_claim_at = time.monotonic()
            if items and self._stopping.is_set():
                # `stop` stopped waiting for this claim: nothing here will run them now.
                with self._lock:
                    claimed = [item.id for item in items if item.id not in self._in_flight]
                self._release(claimed, "just claimed")
                break
            for item in items:
                with self._lock:
                    if item.id in self._in_flight:
                        # Its lease ran out while a thread here still runs it (a clock
                        # that jumped, a database the heartbeat could not reach): that
                        # thread finishes it; the claim has just renewed its lease.
                        continue
                    self._in_flight[item.id] = item
                self._pool.submit(self._run, item)
            if items and len(items) == free:
                continue  # there may be more waiting
            self._wake.wait(self.poll)
            self._wake.clear()

    def _held(self) -> list[int]:
        with self._lock:
            return [*self._in_flight, *self._handled]

    def _run(self, item: InboxItem) -> None:
        # Every record logged while this item is handled carries its delivery key, and a
        # request it opens records it, so handling it again opens no second one.
        with delivering(item.delivery_key, item.attempts):
            self._run_correlated(item)

    def _run_correlated(self, item: InboxItem) -> None:
        try:
            if item.attempts > self.max_attempts:
                # Every earlier holder stopped before it finished (killed, out of memory):
                # the item may be what kills them. Told as dead, not run once more.
                raise AbandonedItem(
                    f"its workers stopped while handling it, {item.attempts - 1} times"
                )
            handler = self.handlers.get(item.handler)
            if handler is None:
                raise LookupError(f"no handler {item.handler!r} in this version of amlbot")
            handler(item)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:8]
            log.exception(
                "inbox item %s (%s, attempt %s) failed (error id %s)",
                item.id,
                item.handler,
                item.attempts,
                error_id,
            )
            self._failed(item, f"{type(exc).__name__} (error id {error_id})", error_id)
        else:
            if self.metrics is not None:
                self.metrics.inbox_handled.labels(item.handler, "ok").inc()
                waited = (self.clock.now() - item.received_at).total_seconds()
                self.metrics.reply_seconds.labels(item.handler).observe(max(0.0, waited))
            # Marked done by the loop, with its next claim. Until then it stays leased; if
            # this process dies first, it is claimed again after its lease, and the
            # handler's idempotence makes the second run a no-op.
            with self._lock:
                self._handled.append(item.id)
        finally:
            with self._lock:
                self._in_flight.pop(item.id, None)
            self._wake.set()  # a thread is free
            try:
                self.on_handled()
            except Exception:
                log.exception("after inbox item %s", item.id)

    def _failed(self, item: InboxItem, error: str, error_id: str) -> None:
        try:
            status = inbox.fail(
                self.inbox_store,
                item.id,
                self.holder,
                self.clock.now(),
                error,
                max_attempts=self.max_attempts,
            )
        except Exception:
            log.exception("recording the failure of inbox item %s failed", item.id)
            return
        if self.metrics is not None:
            outcome = "dead" if status == InboxStatus.DEAD else "failed"
            self.metrics.inbox_handled.labels(item.handler, outcome).inc()
        if status == InboxStatus.DEAD:
            log.error(
                "inbox item %s (%s) dead-lettered after %s attempts (error id %s)",
                item.id,
                item.handler,
                item.attempts,
                error_id,
            )
            if self.on_dead is not None:
                try:
                    self.on_dead(item, error_id)
                except Exception:
                    log.exception("telling about dead inbox item %s failed", item.id)


class _PostgresListener:
    """`LISTEN amlbot_inbox` on a connection of its own; sets `wake` on every notification.
    Reconnects after a failure; the worker's poll covers the gap."""

    def __init__(self, store: Store, wake: threading.Event) -> None:
        self._url = store.engine.url
        self._wake = wake
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="amlbot-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=3)

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(**psycopg_arguments(self._url))

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._connect() as connection:
                    connection.execute(f"LISTEN {inbox.NOTIFY_CHANNEL}")
                    self._wake.set()  # anything inserted before LISTEN took effect
                    while not self._stopping.is_set():
                        ready, _, _ = select.select([connection.fileno()], [], [], 0.5)
                        if ready:
                            for _ in connection.notifies(timeout=0):
                                self._wake.set()
            except Exception as exc:
                log.warning("listening for new inbox items failed (%r); polling meanwhile", exc)
                self._stopping.wait(2.0)
