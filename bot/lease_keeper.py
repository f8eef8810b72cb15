"""Inbox leases kept alive while their holder works: one thread renewing every item a
holder still holds, for the workers' threads (`bot/work.py`) and the edge's trigger-window
jobs (`bot/slack/edge.py`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from approvals import inbox
from approvals.store import Store
from workspaces.clock import Clock

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews, every third of a lease, the leases of the items `held()` names, so that none
    runs out while its holder still works on it: a worker's threads (`InboxWorker`), or the
    edge's trigger-window jobs (`bot/slack/edge.py`). Without it another worker would take
    the item over and run it a second time. The thread starts with the first `start()`."""

    def __init__(
        self,
        store: Store,
        holder: str,
        clock: Clock,
        lease: timedelta,
        held: Callable[[], list[int]],
        *,
        name: str = "amlbot-heartbeat",
    ) -> None:
        self._store = store
        self._holder = holder
        self._clock = clock
        self._lease = lease
        self._held = held
        self._name = name
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def start(self) -> None:
        with self._starting:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._renew, name=self._name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._starting:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=timeout)

    def _renew(self) -> None:
        every = max(self._lease.total_seconds() / 3, 0.05)
        while not self._stopping.wait(every):
            ids = self._held()
            if ids:
                try:
                    inbox.renew(self._store, ids, self._holder, self._clock.now(), self._lease)
                except Exception:
                    log.exception("renewing inbox leases failed; trying again")
