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
import pickle
import select
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.reduction import ForkingPickler
from multiprocessing.synchronize import Event, Lock
from typing import TYPE_CHECKING, Any

from approvals.config import AppConfig
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.serve import BackgroundService
    from bot.slack.app import Registrar
    from bot.slack.edge import AckActivity, Delivery, Job, Pool, SlackEdge, SlackOptions

log = logging.getLogger(__name__)

WORKER_NICENESS = 10
LIVENESS_CHECK_SECONDS = 1.0

# The worker process's own edge, built once by `_start_worker`.
_edge: SlackEdge | None = None
_services: list[BackgroundService] = []


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process builds its own core and edge from (pickled to it)."""

    settings: Settings
    config: AppConfig
    options: SlackOptions
    registrars: tuple[Registrar, ...]
    # The acking process's mode: a worker must pass the same checks (no signing secret
    # is needed in Socket Mode) and build the same listeners.
    socket_mode: bool
    parent: int  # the acking process, whose death ends the worker


def _start_worker(setup: WorkerSetup) -> None:
    global _edge
    settings = setup.settings
    # First, so a worker whose parent dies while it starts up does not linger either.
    threading.Thread(target=_exit_with_parent, args=(setup.parent,), daemon=True).start()
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
    core = build_core(setup.config, database_url=settings.database_url)
    local = dataclasses.replace(setup.options, work_processes=0)
    bot = build_slack(
        core,
        settings,
        socket_mode=setup.socket_mode,
        options=local,
        extra_registrars=setup.registrars,
    )
    bot.edge.identity.load_cached()
    # This process makes the state changes, so it delivers their messages promptly.
    # The first worker also runs the sweeps and the housekeeping, so their database work
    # stays off the process that acknowledges Slack.
    wanted = {"outbox"}
    if _is_first_worker():
        wanted |= {"notifications", "resolve-emails", "prune-inbound"}
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


class JobPipe:
    """The pipe jobs travel to the workers on: every worker reads, the acking process writes.

    Why not `multiprocessing.Queue`: its `put` wakes a feeder thread that pickles and
    writes, and that thread takes the GIL from the event loop on every job; measured with
    bench/ack_latency.py, about 50 us of the acking process's CPU per job, a sixth of an
    ack. Here the caller pickles (a few us) and writes the frame straight into the pipe
    without blocking. Only when the pipe is full (workers far behind) does the rest wait in
    a backlog that a thread writes out, in order, as the pipe drains.

    Frames are what `Connection.recv_bytes` reads (a 4-byte big-endian length, then the
    pickle), and a lock shared by the readers makes each frame go to exactly one worker.
    """

    def __init__(self, context: SpawnContext) -> None:
        self.reader, writer = context.Pipe(duplex=False)
        self.read_lock: Lock = context.Lock()
        self._writer = writer  # keeps the descriptor open
        self._fd = writer.fileno()
        os.set_blocking(self._fd, False)
        self._backlog: deque[bytes] = deque()
        self._changed = threading.Condition()
        self._flusher: threading.Thread | None = None

    def put(self, item: object) -> None:
        payload = ForkingPickler.dumps(item)
        frame = struct.pack("!i", len(payload)) + bytes(payload)
        with self._changed:
            if not self._backlog:  # nothing queued before it: straight into the pipe
                frame = frame[self._write_some(frame) :]
                if not frame:
                    return
            self._backlog.append(frame)
            self._start_flusher()
            self._changed.notify_all()

    def wait_until_written(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._backlog:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _write_some(self, data: bytes) -> int:
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_backlog, name="amlbot-job-pipe", daemon=True
            )
            self._flusher.start()

    def _flush_backlog(self) -> None:
        while True:
            with self._changed:
                while not self._backlog:
                    self._changed.wait()
            select.select([], [self._fd], [])  # until the workers have read some
            with self._changed:
                while self._backlog:
                    chunk = self._backlog[0]
                    written = self._write_some(chunk)
                    if written < len(chunk):
                        self._backlog[0] = chunk[written:]
                        break
                    self._backlog.popleft()
                self._changed.notify_all()


def receive(reader: Connection, read_lock: Lock) -> Any:
    """The next job from a `JobPipe`, in a worker; blocks until there is one."""
    with read_lock:
        data = reader.recv_bytes()
    return pickle.loads(data)


def _work(
    reader: Connection,
    read_lock: Lock,
    ack_activity: AckActivity,
    setup: WorkerSetup,
    ready: Event,
) -> None:
    """A worker process: start, then hand each job it receives to its thread pools."""
    _start_worker(setup)
    assert _edge is not None
    freeze_startup_objects()
    ready.set()
    from bot.slack.edge import wait_for_quiet

    while (item := receive(reader, read_lock)) is not None:
        job, delivery, pool = item
        # The acking process answers the requests in flight first (see `AcksFirst`).
        wait_for_quiet(ack_activity, delivery.handed_at)
        _edge.submit(job, delivery, pool)
    _edge.close()


class WorkerProcesses:
    """Worker processes fed through one `JobPipe`, fire and forget: handing over never
    blocks the event loop, and there are no futures to track in the acking process."""

    def __init__(
        self,
        settings: Settings,
        config: AppConfig,
        options: SlackOptions,
        count: int,
        registrars: tuple[Registrar, ...] = (),
        *,
        socket_mode: bool = False,
    ) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: threads hold locks
        setup = WorkerSetup(settings, config, options, registrars, socket_mode, os.getpid())
        self._jobs = JobPipe(context)
        # Written by the acking process only (no lock needed), read by the workers.
        self.ack_activity: AckActivity = context.Array("d", 2, lock=False)
        self._ready = [context.Event() for _ in range(count)]
        self._processes = [
            context.Process(
                target=_work,
                args=(
                    self._jobs.reader,
                    self._jobs.read_lock,
                    self.ack_activity,
                    setup,
                    ready,
                ),
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
        self._jobs.wait_until_written(timeout=10)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
