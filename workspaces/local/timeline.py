"""How simulated jobs and clusters move through time. Pure functions, no database, no clock.

A job's whole schedule is fixed when it is submitted (and again for waiting jobs when another
one is cancelled), so its status at any moment is read off that schedule: no thread ticks.

Timing of a job on a cluster:
- Queued while it waits for free capacity (jobs ahead of it hold every node), then while
  its nodes are allocated: 60 s when the cluster must scale up, 10 s when idle nodes are warm.
- Preparing 20 s (image pull and set-up on the nodes).
- Running 2 min, or the sum of the `sleep N` in its command; 20 s before a failure.
- Finalizing 10 s, then Completed or Failed.

A cluster's nodes: each node a job releases stays up idle for the cluster's idle time before
scale-down, and the cluster never goes below its minimum. A shorter idle time scales down at
once the nodes idle longer than it; a longer one keeps those still up, never revives others.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from workspaces.types import JobStatus

QUEUED_WITH_WARM_NODES = timedelta(seconds=10)
QUEUED_WHILE_SCALING_UP = timedelta(seconds=60)
PREPARING = timedelta(seconds=20)
RUNNING_BY_DEFAULT = timedelta(minutes=2)
RUNNING_BEFORE_FAILURE = timedelta(seconds=20)
FINALIZING = timedelta(seconds=10)

_SLEEP = re.compile(r"\bsleep\s+(\d+(?:\.\d+)?)\b")
_EXIT = re.compile(r"\bexit\s+([1-9]\d*)\b")
_ASKS_TO_FAIL = re.compile(r"\braise\b|\bfail\b", re.IGNORECASE)


@dataclass(frozen=True)
class CommandReading:
    """What a command's text says about its run. The command itself never runs."""

    run_for: timedelta
    exit_code: int  # 0: succeeds
    process: str  # the program Azure names in its failure message


def read_command(command: str) -> CommandReading:
    sleeps = [float(seconds) for seconds in _SLEEP.findall(command)]
    exit_match = _EXIT.search(command)
    if exit_match:
        exit_code = int(exit_match.group(1))
    elif _ASKS_TO_FAIL.search(command):
        exit_code = 1
    else:
        exit_code = 0
    if sleeps:
        run_for = timedelta(seconds=sum(sleeps))
    else:
        run_for = RUNNING_BEFORE_FAILURE if exit_code else RUNNING_BY_DEFAULT
    return CommandReading(run_for=run_for, exit_code=exit_code, process=_program(command))


def _program(command: str) -> str:
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: Azure would still start the shell
        words = command.split()
    return PurePosixPath(words[0]).name if words else "python"


# Where Azure ML's common runtime writes a command job's own output.
STD_LOG = "user_logs/std_log.txt"


def failure_message(process: str, exit_code: int) -> str:
    return (
        f"Execution failed. User process '{process}' exited with status code {exit_code}. "
        f"Please check log file '{STD_LOG}' for more details."
    )


@dataclass(frozen=True)
class Holding:
    """A job's claim on a cluster's nodes, from allocation until it ends or is cancelled."""

    nodes_at: datetime
    released_at: datetime
    count: int
    new_nodes: int  # nodes the cluster had to add for this job
    preparing_at: datetime  # end of allocation

    def holds_at(self, moment: datetime) -> bool:
        return self.nodes_at <= moment < self.released_at

    @property
    def ever_held(self) -> bool:
        """False for a job cancelled while it waited for capacity."""
        return self.nodes_at < self.released_at


@dataclass(frozen=True)
class ClusterShape:
    min_nodes: int
    max_nodes: int
    idle: timedelta
    retired_min_nodes: int = 0
    min_lowered_at: datetime | None = None
    # Set when the idle time last changed: nodes idle since before `idle_floor` had already
    # scaled down then, and a longer idle time must not bring them back.
    idle_changed_at: datetime | None = None
    idle_floor: datetime | None = None

    def window_start(self, moment: datetime) -> datetime:
        """Nodes released after this are still up at `moment` (the idle period's start)."""
        start = moment - self.idle
        changed, floor = self.idle_changed_at, self.idle_floor
        if changed is not None and floor is not None and moment >= changed:
            start = max(start, floor)
        return start


@dataclass(frozen=True)
class Schedule:
    nodes_at: datetime
    new_nodes: int
    preparing_at: datetime
    running_at: datetime
    finalizing_at: datetime
    ended_at: datetime


@dataclass(frozen=True)
class NodeState:
    current_nodes: int
    node_state_counts: dict[str, int]
    allocation_state: str


def busy_nodes(holdings: Iterable[Holding], moment: datetime) -> int:
    return sum(h.count for h in holdings if h.holds_at(moment))


def nodes_up(shape: ClusterShape, holdings: Sequence[Holding], moment: datetime) -> int:
    """Nodes allocated at `moment`: the busiest point of the last idle period, or the minimum."""
    window_start = shape.window_start(moment)
    # Usage only rises when a job takes nodes, so its peak in the window is at the window's
    # start or at one of those moments.
    peaks = [window_start, *(h.nodes_at for h in holdings if window_start < h.nodes_at <= moment)]
    peak = max(busy_nodes(holdings, point) for point in peaks)
    floor = shape.min_nodes
    # The nodes a lowered minimum freed idle from that moment, like nodes a job released.
    if shape.min_lowered_at is not None and shape.min_lowered_at > window_start:
        floor = max(floor, shape.retired_min_nodes)
    return min(shape.max_nodes, max(floor, peak))


def schedule_job(
    shape: ClusterShape,
    ahead: Sequence[Holding],
    earliest: datetime,
    instance_count: int,
    run_for: timedelta,
) -> Schedule:
    """Place a job behind the `ahead` ones (first come, first served) at `earliest` or later."""
    started_ahead = [h.nodes_at for h in ahead if h.ever_held]
    not_before = max([earliest, *started_ahead])
    # Every job ahead holds its nodes by `not_before`, so usage only falls from then on and
    # the first release that leaves room is the moment this job gets its nodes.
    releases = sorted({h.released_at for h in ahead if h.released_at > not_before})
    candidates = [not_before, *releases]
    nodes_at = next(
        (t for t in candidates if busy_nodes(ahead, t) + instance_count <= shape.max_nodes),
        candidates[-1],
    )
    warm = nodes_up(shape, ahead, nodes_at) - busy_nodes(ahead, nodes_at)
    new_nodes = max(0, instance_count - warm)
    preparing_at = nodes_at + (QUEUED_WHILE_SCALING_UP if new_nodes else QUEUED_WITH_WARM_NODES)
    running_at = preparing_at + PREPARING
    finalizing_at = running_at + run_for
    return Schedule(
        nodes_at=nodes_at,
        new_nodes=new_nodes,
        preparing_at=preparing_at,
        running_at=running_at,
        finalizing_at=finalizing_at,
        ended_at=finalizing_at + FINALIZING,
    )


def job_status(
    schedule: Schedule, exit_code: int, canceled_at: datetime | None, moment: datetime
) -> JobStatus:
    if canceled_at is not None and moment >= canceled_at:
        return JobStatus.CANCELED
    if moment < schedule.preparing_at:
        return JobStatus.QUEUED
    if moment < schedule.running_at:
        return JobStatus.PREPARING
    if moment < schedule.finalizing_at:
        return JobStatus.RUNNING
    if moment < schedule.ended_at:
        return JobStatus.FINALIZING
    return JobStatus.FAILED if exit_code else JobStatus.COMPLETED


def cluster_nodes(shape: ClusterShape, holdings: Sequence[Holding], moment: datetime) -> NodeState:
    busy = busy_nodes(holdings, moment)
    up = nodes_up(shape, holdings, moment)
    allocating = sum(
        h.new_nodes for h in holdings if h.holds_at(moment) and moment < h.preparing_at
    )
    counts = {
        "idle": up - busy,
        "running": busy - allocating,
        "preparing": allocating,
        "unusable": 0,
        "leaving": 0,
        "preempted": 0,
    }
    return NodeState(
        current_nodes=up,
        node_state_counts=counts,
        allocation_state="Resizing" if allocating else "Steady",
    )
