"""Work in other processes, so the acks have a GIL of their own.

In one process, jobs on threads share the GIL with the event loop that acks: under a
burst, every millisecond of work (SQLAlchemy, the Azure SDK, JSON) is a millisecond an
ack waits. With `SlackOptions.work_processes > 0` the acking process only verifies,
acks and passes `(job, delivery)` to a worker process; each worker builds its own core
and Slack edge from the same settings and configuration, runs the jobs on its own thread
pools (so a stalled Azure call still holds only a thread), and delivers the outbox. All
state is in the database, so it does not matter which process handles what.

Jobs cross the process boundary by reference: a job must be a module-level function.
The workers build their edge with the same `extra_registrars`, which imports the
registrars' modules there too, so outbox renderers registered by those modules (with
`register_renderer`) exist in the workers that deliver the outbox.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import threading
import time
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING

from approvals.config import AppConfig
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.serve import BackgroundService
    from bot.slack.app import Registrar
    from bot.slack.edge import Delivery, Job, Pool, SlackEdge, SlackOptions

log = logging.getLogger(__name__)

WORKER_NICENESS = 10
LIVENESS_CHECK_SECONDS = 1.0

# The worker process's own edge, built once by `_start_worker`.
_edge: SlackEdge | None = None
_services: list[BackgroundService] = []


def _start_worker(
    settings: Settings,
    config: AppConfig,
    options: SlackOptions,
    parent: int,
    registrars: tuple[Registrar, ...],
) -> None:
    global _edge
    # First, so a worker whose parent dies while it starts up does not linger either.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # Acks must win the CPU: Slack drops a command not acked within 3 s, while the work
    # behind it can wait a few milliseconds. A lower priority lets the acking process run
    # first whenever both want the CPU.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    import dataclasses

    from bot.serve import background_services
    from bot.slack.app import build_slack
    from bot.wiring import build_core

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    core = build_core(config, database_url=settings.database_url)
    local = dataclasses.replace(options, work_processes=0)
    bot = build_slack(core, settings, options=local, extra_registrars=registrars)
    bot.edge.identity.load_cached()
    # This process makes the state changes, so it delivers their messages promptly.
    # The first worker also runs the sweeps, so their database work stays off the
    # process that acknowledges Slack.
    wanted = {"outbox", "notifications"} if _is_first_worker() else {"outbox"}
    _services[:] = [service for service in background_services(core, bot) if service.name in wanted]
    for service in _services:
        service.start()
    _edge = bot.edge


def freeze_startup_objects() -> None:
    """Move everything made at start-up out of the garbage collector's way.

    The imports (SQLAlchemy, pydantic, Bolt) leave hundreds of thousands of objects that
    never die; every full collection would walk them again, pausing the process for tens
    of milliseconds while acks wait. Measured with bench/ack_latency.py.
    """
    gc.collect()
    gc.freeze()


def _is_first_worker() -> bool:
    return multiprocessing.current_process().name.endswith("-0")


def _exit_with_parent(parent: int) -> None:
    """A worker whose acking process died (killed, not shut down) must not linger."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _work(
    jobs: multiprocessing.Queue[tuple[Job, Delivery, Pool] | None],
    settings: Settings,
    config: AppConfig,
    options: SlackOptions,
    parent: int,
    registrars: tuple[Registrar, ...],
    ready: Event,
) -> None:
    """A worker process: start, then hand each job it receives to its thread pools."""
    _start_worker(settings, config, options, parent, registrars)
    assert _edge is not None
    freeze_startup_objects()
    ready.set()
    while (item := jobs.get()) is not None:
        job, delivery, pool = item
        _edge.submit(job, delivery, pool)
    _edge.close()


class WorkerProcesses:
    """Worker processes fed through one queue, fire and forget: `put` only appends to a
    buffer (a feeder thread writes it to the pipe), so handing over never blocks the
    event loop, and there are no futures to track in the acking process."""

    def __init__(
        self,
        settings: Settings,
        config: AppConfig,
        options: SlackOptions,
        count: int,
        registrars: tuple[Registrar, ...] = (),
    ) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: threads hold locks
        self._jobs: multiprocessing.Queue[tuple[Job, Delivery, Pool] | None] = context.Queue()
        self._ready = [context.Event() for _ in range(count)]
        self._processes = [
            context.Process(
                target=_work,
                args=(self._jobs, settings, config, options, os.getpid(), registrars, ready),
                name=f"amlbot-work-{n}",
                daemon=True,
            )
            for n, ready in enumerate(self._ready)
        ]
        for process in self._processes:
            process.start()
        self._alive = True
        self._checked_at = time.monotonic()

    def submit(self, job: Job, delivery: Delivery, pool: Pool) -> bool:
        """Hand a job to a worker; False if no worker is alive (the caller runs it)."""
        if not self._any_alive():
            log.error("no worker process is alive; running the work in this process")
            return False
        self._jobs.put((job, delivery, pool))
        return True

    def ready(self) -> bool:
        """Every worker has started (imports, database, Slack client): until then the
        process is not ready for traffic, and its health check says so."""
        return all(event.is_set() for event in self._ready)

    def _any_alive(self) -> bool:
        # Asking the OS about every worker on every command costs the acking process a
        # system call per worker; once a second is often enough to notice a dead one.
        now = time.monotonic()
        if now - self._checked_at >= LIVENESS_CHECK_SECONDS:
            self._alive = any(process.is_alive() for process in self._processes)
            self._checked_at = now
        return self._alive

    def close(self) -> None:
        for _ in self._processes:
            self._jobs.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
