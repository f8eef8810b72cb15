"""What the processes sharing this machine's CPUs spent, read from `/proc` (Linux; zero or
empty elsewhere): a process's CPU time and its children's, the whole machine's, and resident
memory. The load of `ack_latency.py` reads them around each level."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far, in nanosecond resolution (schedstat), so a
    level of a few hundred requests is measured, not rounded to 10 ms ticks; 0 off Linux."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    return total / 1e9


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


def cpu_snapshot(pid: int, catcher_pid: int | None = None) -> dict[str, float]:
    """CPU seconds so far of everything sharing this machine's CPUs during a level: the
    server under test (its acking process, the `edge`, and the processes it started, the
    `workers` behind each ack), this load generator, the reply catcher standing in for
    Slack, PostgreSQL's server processes when the database runs here, and the whole
    `machine` (every process, the kernel included)."""
    return {
        "edge": cpu_seconds(pid),
        "workers": sum(cpu_seconds(child) for child in child_pids(pid)),
        "load": cpu_seconds(os.getpid()),
        "catcher": cpu_seconds(catcher_pid) if catcher_pid is not None else 0.0,
        "postgres": sum(cpu_seconds(server) for server in pids_named("postgres")),
        "machine": machine_busy_seconds(),
    }


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
