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
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from multiprocessing.synchronize import Event
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
# A worker that lived this long died by accident, not at start: restart it at once.
STABLE_SECONDS = 60.0
MAX_RESTART_DELAY_SECONDS = 60.0

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
        level=settings.log_level,
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
    """The pipe one worker reads its jobs from; the acking process writes.

    Why not `multiprocessing.Queue`: its `put` wakes a feeder thread that pickles and
    writes, and that thread takes the GIL from the event loop on every job; measured with
    bench/ack_latency.py, about 50 us of the acking process's CPU per job, a sixth of an
    ack. Here the caller pickles (a few us) and writes the frame straight into the pipe
    without blocking. Only when the pipe is full (the worker far behind) does the rest wait
    in a backlog that a thread writes out, in order, as the pipe drains.

    One pipe per worker, not one shared: readers of a shared pipe need a lock, and a worker
    killed while it waits for a job holds that lock for good (and may leave half a frame
    behind), which would stop every other worker. A dead worker's pipe is simply dropped.

    Frames are what `Connection.recv_bytes` reads: a 4-byte big-endian length, then the
    pickle.
    """

    def __init__(self, context: SpawnContext) -> None:
        self.reader, writer = context.Pipe(duplex=False)
        self._writer = writer  # keeps the descriptor open
        self._fd = writer.fileno()
        os.set_blocking(self._fd, False)
        self._backlog: deque[bytes] = deque()
        self._changed = threading.Condition()
        self._flusher: threading.Thread | None = None
        self._closed = False

    def put(self, item: object) -> None:
        payload = ForkingPickler.dumps(item)
        frame = struct.pack("!i", len(payload)) + bytes(payload)
        with self._changed:
            if self._closed:
                return
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
            while self._backlog and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return not self._backlog

    def close(self) -> None:
        """Drop the pipe (its worker is gone): what was not written yet is lost with it."""
        with self._changed:
            self._closed = True
            self._backlog.clear()
            self._changed.notify_all()
        self._writer.close()
        self.reader.close()

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
                while not self._backlog and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
            try:
                select.select([], [self._fd], [], LIVENESS_CHECK_SECONDS)  # until it reads
            except (OSError, ValueError):
                return  # closed under us
            with self._changed:
                while self._backlog and not self._closed:
                    chunk = self._backlog[0]
                    written = self._write_some(chunk)
                    if written < len(chunk):
                        self._backlog[0] = chunk[written:]
                        break
                    self._backlog.popleft()
                self._changed.notify_all()


def receive(reader: Connection) -> Any:
    """The next job from a `JobPipe`, in its worker; blocks until there is one."""
    return pickle.loads(reader.recv_bytes())


def _work(
    reader: Connection,
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

    while (item := receive(reader)) is not None:
        job, delivery, pool = item
        # The acking process answers the requests in flight first (see `AcksFirst`).
        wait_for_quiet(ack_activity, delivery.handed_at)
        _edge.submit(job, delivery, pool)
    _edge.close()


@dataclass
class _Worker:
    """One worker process and what the acking process keeps for it."""

    index: int
    process: BaseProcess
    pipe: JobPipe
    ready: Event
    started_at: float
    restarts: int = 0  # in a row, each soon after the last start: the backoff grows
    alive: bool = True  # as the supervisor last saw it


class WorkerProcesses:
    """Worker processes, each fed through its own `JobPipe`, fire and forget: handing over
    never blocks the event loop, and there are no futures to track in the acking process.

    A supervisor thread looks at the workers once a second and starts a new one in place of
    one that died (killed, out of memory), with the same name, so the first worker's
    sweeps resume; one that keeps dying is restarted less and less often. Until every
    worker is up again, `ready()` says no, and so does `/healthz`.
    """

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
        self._context = multiprocessing.get_context("spawn")  # not fork: threads hold locks
        self._setup = WorkerSetup(settings, config, options, registrars, socket_mode, os.getpid())
        # Written by the acking process only (no lock needed), read by the workers.
        self.ack_activity: AckActivity = self._context.Array("d", 2, lock=False)
        self._lock = threading.Lock()
        self._workers = [self._start(index) for index in range(count)]
        self._next = 0
        self._closing = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, name="amlbot-workers", daemon=True
        )
        self._supervisor.start()

    def _start(self, index: int, restarts: int = 0) -> _Worker:
        pipe = JobPipe(self._context)
        ready = self._context.Event()
        process = self._context.Process(
            target=_work,
            args=(pipe.reader, self.ack_activity, self._setup, ready),
            name=f"amlbot-work-{index}",
            daemon=True,
        )
        process.start()
        return _Worker(index, process, pipe, ready, time.monotonic(), restarts)

    def submit(self, job: Job, delivery: Delivery, pool: Pool) -> bool:
        """Hand a job to the next live worker; False if none is (the caller runs it)."""
        with self._lock:
            for _ in range(len(self._workers)):
                worker = self._workers[self._next % len(self._workers)]
                self._next += 1
                if worker.alive:
                    worker.pipe.put((job, delivery, pool))
                    return True
        log.error("no worker process is alive; running the work in this process")
        return False

    def ready(self) -> bool:
        """Every worker is up (imports, database, Slack client): until then the process is
        not ready for traffic, and its health check says so."""
        with self._lock:
            return all(worker.alive and worker.ready.is_set() for worker in self._workers)

    def _supervise(self) -> None:
        # Asking the OS about the workers on every command would cost the acking process a
        # system call per worker; once a second is soon enough to notice a dead one.
        while not self._closing.wait(LIVENESS_CHECK_SECONDS):
            for worker in list(self._workers):
                if worker.process.is_alive():
                    continue
                if worker.alive:
                    with self._lock:
                        worker.alive = False
                    worker.pipe.close()
                    log.error(
                        "worker process %s died (exit code %s); starting another",
                        worker.process.name,
                        worker.process.exitcode,
                    )
                if self._closing.is_set() or time.monotonic() < self._restart_at(worker):
                    continue
                quick = time.monotonic() - worker.started_at < STABLE_SECONDS
                replacement = self._start(worker.index, worker.restarts + 1 if quick else 0)
                with self._lock:
                    self._workers[worker.index] = replacement

    @staticmethod
    def _restart_at(worker: _Worker) -> float:
        return worker.started_at + min(2.0**worker.restarts, MAX_RESTART_DELAY_SECONDS)

    def close(self) -> None:
        self._closing.set()
        self._supervisor.join(timeout=5)
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            if worker.alive:
                worker.pipe.put(None)
        for worker in workers:
            worker.pipe.wait_until_written(timeout=10)
        for worker in workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.terminate()
