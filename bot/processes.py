"""The processes on one machine: how many `amlbot work` children `serve` starts, and the
children themselves (started again when one exits, ended when `serve` is killed).

Each child serves its own `/healthz`, `/readyz` and `/metrics` on a port of its own (the
first is `serve --work-health-port`, by default the port after `serve`'s own; the next
child the port after that), because what a worker did (inbox items, Azure calls, sweeps)
is counted in its own registry and only it can answer for it. The parent's `/readyz`
asks each child's `/readyz` (`WorkerChildren.status`): `serve` is ready only while every
child runs and claims, as `amlbot work` is only while its worker does. Its `/healthz`
never asks: a dead child is restarted here, not by restarting `serve`.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from bot.settings import Settings, WorkPriority

log = logging.getLogger(__name__)

MAX_RESTART_DELAY_SECONDS = 30.0
# Workers finish what they hold within this after SIGTERM; Kubernetes waits 30 s by default
# (terminationGracePeriodSeconds) before it kills.
SHUTDOWN_GRACE_SECONDS = 20.0
# The parent's readiness probe waits at most this for a child's answer.
CHILD_PROBE_SECONDS = 2.0
# A child (re)started this recently may not answer yet (it imports, connects, migrates):
# until then its silence does not make `serve` unready; a child that exited always does.
CHILD_START_SECONDS = 60.0


class BackgroundService(Protocol):
    """Something a process runs beside its edge, started and stopped with it."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


def stop_all(services: Sequence[BackgroundService]) -> None:
    """Stop `services` in the reverse of their starting order. One that fails to stop is
    logged and the rest still stop: a worker that cannot release its items (its database
    gone) must not keep the outbox or the child processes running."""
    for service in reversed(services):
        try:
            service.stop()
        except Exception:
            log.exception("stopping %s failed; stopping the rest", service.name)


def work_processes(settings: Settings, database_url: str) -> int:
    """Worker processes `serve` starts: `AMLBOT_WORK_PROCESSES` (0: the edge alone, for a
    deployment that runs `amlbot work` itself); else on SQLite one (its claims are meant
    for one claiming process per database file), on PostgreSQL one per CPU this process
    may use, 1 to 4.

    Never none by default, not even on SQLite: a worker in the acking process takes the
    interpreter's lock from the event loop whenever it runs Python, and every ack waits."""
    if not database_url.startswith("postgresql"):
        return min(1, settings.work_processes) if settings.work_processes is not None else 1
    if settings.work_processes is not None:
        return settings.work_processes
    return max(1, min(4, usable_cpus()))


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota.

    `os.cpu_count()` counts the machine's: in a container limited to one CPU on a 16-core
    node it says 16, and four workers of 100-200 MB each would meet the memory limit.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = cpus or os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_cpu_quota(root: Path) -> float | None:
    """The CPU quota of cgroup v2 (`cpu.max`: "QUOTA PERIOD" or "max PERIOD") or v1
    (`cpu/cpu.cfs_quota_us`, -1 for none), in CPUs; None when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return int(quota) / int(period) if quota != "max" else None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


class WorkerChildren:
    """`amlbot work` child processes of `serve`; one that exits is started again (sooner
    the longer it had lived). They get SIGTERM if `serve` itself dies (PDEATHSIG)."""

    name = "work-processes"

    def __init__(
        self,
        count: int,
        config_path: str | None,
        *,
        health_port: int | None = None,
        health_host: str = "0.0.0.0",
        priority: WorkPriority = "idle",
    ) -> None:
        self.count = count
        self.priority = priority
        self.command = [sys.executable, "-m", "bot.cli", "work"]
        if config_path:
            self.command += ["--config", config_path]
        # Child i serves its probes and metrics on health_port + i (none without a port).
        self.health_ports: list[int | None] = [
            health_port + index if health_port else None for index in range(count)
        ]
        self.health_host = health_host
        self._children: list[subprocess.Popen[bytes] | None] = [None] * count
        self._started_at = [0.0] * count
        self._restarts = [0] * count
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="amlbot-children", daemon=True)

    def start(self) -> None:
        for index in range(self.count):
            self._spawn(index)
        self._thread.start()

    def command_of(self, index: int) -> list[str]:
        port = self.health_ports[index]
        if port is None:
            return list(self.command)
        return [*self.command, "--health-port", str(port), "--health-host", self.health_host]

    def _spawn(self, index: int) -> None:
        self._children[index] = subprocess.Popen(
            self.command_of(index),
            preexec_fn=functools.partial(_in_child, self.priority, os.getpid()),
        )
        self._started_at[index] = time.monotonic()

    def status(self) -> str:
        """ "ok" while every child runs and (with a health port) answers ready, or is still
        starting (`CHILD_START_SECONDS`) and not answering yet; else why not, naming the
        child. For the parent's `/readyz`."""
        problems = []
        for index, child in enumerate(list(self._children)):
            name = f"work process {index + 1}"
            if child is None or child.poll() is not None:
                problems.append(f"{name} is not running (being restarted)")
                continue
            port = self.health_ports[index]
            starting = time.monotonic() - self._started_at[index] < CHILD_START_SECONDS
            if port is not None:
                verdict = self._ask_ready(port)
                if verdict != "ok" and not (starting and verdict.startswith("not answering")):
                    problems.append(f"{name} (pid {child.pid}) {verdict}")
        return "; ".join(problems) or "ok"

    def _ask_ready(self, port: int) -> str:
        host = "127.0.0.1" if self.health_host in ("0.0.0.0", "", "::") else self.health_host
        url = f"http://{host}:{port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=CHILD_PROBE_SECONDS) as answer:
                return "ok" if answer.status == 200 else f"answers {answer.status}"
        except urllib.error.HTTPError as refused:
            try:
                checks = json.loads(refused.read())
            except ValueError:
                checks = {}
            why = ", ".join(f"{k}: {v}" for k, v in checks.items() if k != "status" and v != "ok")
            return f"not ready ({why or checks.get('status', refused.code)})"
        except OSError as failed:
            return f"not answering on port {port} ({type(failed).__name__})"

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            for index, child in enumerate(self._children):
                if child is None or child.poll() is None:
                    continue
                lived = time.monotonic() - self._started_at[index]
                self._restarts[index] = 0 if lived > 60 else self._restarts[index] + 1
                delay = min(2.0 ** self._restarts[index] - 1, MAX_RESTART_DELAY_SECONDS)
                log.error(
                    "worker process %s exited (%s); starting another in %.0fs",
                    child.pid,
                    child.returncode,
                    delay,
                )
                self._children[index] = None
                if self._stopping.wait(delay):
                    return
                self._spawn(index)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        children = [child for child in self._children if child is not None]
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS + 5
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()


# `serve`'s workers give way to its acks when both want the CPU: a burst of commands is
# acknowledged first and answered right after (Slack's 3 s ack deadline is hard; a reply
# a few milliseconds later is not). On an idle machine neither policy changes anything.
#
# "idle" is Linux's SCHED_IDLE: a worker thread runs only on a CPU nothing else wants, and
# waking up never preempts the edge. Nice 10 ("low") still weighs each of a worker's
# threads against the edge's one, and a woken thread preempts it: measured with
# bench/ack_latency.py at 50 commands in flight on PostgreSQL, two CPUs, the acks' p99
# was 2.8-3.6x the bare Bolt app's at nice 10 and 1.4-1.9x with SCHED_IDLE. The price:
# on a machine whose CPUs other work keeps busy, "idle" workers wait for it to pause.
WORKER_NICENESS = 10


def _in_child(priority: WorkPriority, parent: int) -> None:
    """In a worker child, before exec."""
    _die_with_parent(parent)
    give_way_to_the_edge(priority)


def give_way_to_the_edge(priority: WorkPriority) -> str:
    """Lower this process's CPU priority as `priority` says; what it now runs at. Where
    SCHED_IDLE is missing (not Linux) or refused, nice 10; where that is refused too, the
    parent's priority."""
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError:
            pass
    try:
        os.nice(WORKER_NICENESS)
        return "low"
    except OSError:
        return "unchanged"


def freeze_startup_objects() -> None:
    """Move everything made at start-up out of the garbage collector's way.

    The imports (SQLAlchemy, pydantic, Bolt, azure-ai-ml) leave 100,000-200,000 objects
    that never die; every full collection would walk them again. Measured with
    bench/ack_latency.py: in the edge, pauses of tens of milliseconds while acks wait; in
    an `amlbot work` process, about 100 ms every few seconds under load, with every reply
    in flight waiting (the p99 of `help` replies at 10 people went from about 40 ms to
    120-130 ms in the levels such a pause fell in).
    """
    gc.collect()
    gc.freeze()


def cpu_priority() -> str:
    """How this process shares the CPUs, for its start-up log line."""
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) == os.SCHED_IDLE:
        return "idle (SCHED_IDLE)"
    niceness = os.nice(0)
    return f"nice {niceness}" if niceness else "normal"


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGTERM when the parent dies, even by SIGKILL. A parent
    that died between the fork and this call sends nothing: the child, adopted by then,
    ends here instead of running on as an orphan nobody stops."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the child outlives a killed parent
        return
    if os.getppid() != parent:
        os._exit(0)
