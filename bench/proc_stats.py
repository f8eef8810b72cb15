"""What the processes sharing this machine's CPUs spent, read from `/proc` (Linux; zero or
empty elsewhere): a process's CPU time and its children's, the whole machine's, and resident
memory. The load of `ack_latency.py` reads them around each level."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def task_cpu_ns(pid: int) -> dict[int, int]:
    """CPU time so far of each thread of `pid`, in nanoseconds (schedstat), so a level of a
    few hundred requests is measured, not rounded to 10 ms ticks; empty off Linux."""
    spent: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
                spent[int(task)] = int(f.read().split()[0])
    return spent


def processes() -> Iterator[tuple[int, str, int]]:
    """(pid, command name, parent's pid) of every process on this machine (none off Linux)."""
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:  # it ended meanwhile
                continue
            # The command name is in parentheses and may hold either: it ends at the last ")".
            name, _, fields = stat.partition("(")[2].rpartition(")")
            yield int(entry), name, int(fields.split()[1])


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (amlbot's worker processes)."""
    return [child for child, _, parent in processes() if parent == pid]


# Who shares the machine's CPUs during a level, in the order `cpu_snapshot` names them.
CPU_USERS = ("edge", "workers", "load", "catcher", "postgres", "machine")


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU time so far of each thread of everyone sharing the machine during a level, and
    of the whole machine. Kept per thread because processes and threads come and go
    during a level (PostgreSQL backends of other clients, a worker restarted, a pool's
    thread retired): a sum per user would drop when one ends and read negative."""

    threads_ns: dict[tuple[str, int, int], int]  # (user, pid, thread id) -> CPU so far
    machine_s: float

    def spent_since(self, before: CpuSnapshot) -> dict[str, float]:
        """CPU seconds each user spent between `before` and this snapshot. A thread that
        started meanwhile counts whole; one that ended meanwhile is missing from this
        snapshot and its last moments go uncounted, so a figure may read a little low,
        never below zero."""
        spent = dict.fromkeys(CPU_USERS, 0.0)
        for key, ns in self.threads_ns.items():
            spent[key[0]] += max(0, ns - before.threads_ns.get(key, 0)) / 1e9
        spent["machine"] = max(0.0, self.machine_s - before.machine_s)
        return spent


def cpu_snapshot(pid: int, catcher_pid: int | None = None) -> CpuSnapshot:
    """CPU time so far of everything sharing this machine's CPUs during a level: the
    server under test (its acking process, the `edge`, and the processes it started, the
    `workers` behind each ack), this load generator, the reply catcher standing in for
    Slack, PostgreSQL's server processes when the database runs here, and the whole
    `machine` (every process, the kernel included)."""
    owners: list[tuple[str, int]] = [("edge", pid), ("load", os.getpid())]
    owners += [("workers", child) for child in child_pids(pid)]
    if catcher_pid is not None:
        owners.append(("catcher", catcher_pid))
    owners += [("postgres", server) for server in pids_named("postgres")]
    threads = {
        (user, owner, thread): ns
        for user, owner in owners
        for thread, ns in task_cpu_ns(owner).items()
    }
    return CpuSnapshot(threads, machine_busy_seconds())


def pids_named(command: str) -> list[int]:
    """The processes whose command name is `command`."""
    return [pid for pid, name, _ in processes() if name == command]


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of this machine spent busy so far (`/proc/stat`: all but idle
    and iowait; 0 off Linux)."""
    with contextlib.suppress(OSError), open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(tick) for tick in f.readline().split()[1:9]
        )
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return 0.0


def rss_of_tree(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
        stack += child_pids(current)
    return total
