"""Outcomes of the inbox writer's thread, handed to the event loop (SQLite's writer)."""

from __future__ import annotations

import asyncio
import threading


class Settler:
    """Hands the inbox writer's outcomes to the event loop, one wake-up per batch: each
    `call_soon_threadsafe` writes to the loop's self-pipe and costs the loop an iteration,
    and a batch committed for 20 acks would otherwise wake it 20 times."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[int | None], int | None, BaseException | None]]
        self._ready = []
        self._scheduled = False

    def settle(
        self, kept: asyncio.Future[int | None], item_id: int | None, error: BaseException | None
    ) -> None:
        """From the writer's thread: `kept` ends with the item's id (or the error)."""
        with self._lock:
            self._ready.append((kept, item_id, error))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: no ack is waiting any more
            with self._lock:
                self._scheduled = False
            raise

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for kept, item_id, error in ready:
            if kept.done():  # the ack was cancelled meanwhile (the client went away)
                continue
            if error is not None:
                kept.set_exception(error)
            else:
                kept.set_result(item_id)
