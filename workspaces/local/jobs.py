"""Simulated jobs and the cluster nodes they hold, read and written inside a transaction.

The schedules come from `timeline`; this module stores them and turns rows into the
port's types. Callers hold the workspace's turn (see `LocalWorkspace._changing`) when they
write, so two submissions never plan against the same free nodes.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared.errors import ConflictError, NotFoundError, WorkspaceError
from workspaces.local.tables import SimClusterRow, SimInstanceRow, SimJobRow
from workspaces.local.timeline import (
    ClusterShape,
    Holding,
    Schedule,
    cluster_nodes,
    failure_message,
    job_status,
    read_command,
    schedule_job,
)
from workspaces.types import ClusterInfo, JobInfo, JobSpec, JobStatus, Priority

# Azure's rule for job names; it also keeps the name safe inside the studio URL.
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
_STUDIO = "https://ml.azure.com/runs"
# Who the simulation records as having submitted the jobs the bot submits.
BOT_IDENTITY = "amlbot"


def find_cluster(session: Session, workspace: str, name: str) -> SimClusterRow:
    row = session.get(SimClusterRow, (workspace, name))
    if row is not None:
        return row
    if session.get(SimInstanceRow, (workspace, name)) is not None:
        raise WorkspaceError(
            f"`{name}` is a compute instance; the simulated workspace `{workspace}` runs "
            "jobs and grants access on compute clusters only."
        )
    names = session.scalars(
        select(SimClusterRow.name)
        .where(SimClusterRow.workspace == workspace)
        .order_by(SimClusterRow.name)
    ).all()
    raise NotFoundError(
        f"There is no compute cluster named `{name}` in workspace `{workspace}`. "
        f"Clusters here: {', '.join(names) or 'none'}."
    )


def find_job(session: Session, workspace: str, name: str) -> SimJobRow:
    row = session.scalar(
        select(SimJobRow).where(SimJobRow.workspace == workspace, SimJobRow.name == name)
    )
    if row is None:
        raise NotFoundError(f"There is no job `{name}` in workspace `{workspace}`.")
    return row


def submit(
    session: Session,
    workspace: str,
    spec: JobSpec,
    now: datetime,
    created_by: str = BOT_IDENTITY,
) -> SimJobRow:
    """The job named `spec.name`: the one already there, or a new one planned from now."""
    if not _JOB_NAME.match(spec.name):
        raise WorkspaceError(
            f"Job name `{spec.name}` is not allowed: use up to 255 letters, digits, "
            "`-` and `_`, starting with a letter or digit."
        )
    existing = session.scalar(
        select(SimJobRow).where(SimJobRow.workspace == workspace, SimJobRow.name == spec.name)
    )
    if existing is not None:
        # The bot resubmits under the same name after a retry: the first job stands.
        return existing
    cluster = find_cluster(session, workspace, spec.compute)
    if not 1 <= spec.instance_count <= cluster.max_nodes:
        raise WorkspaceError(
            f"Job {spec.name} asks for {spec.instance_count} nodes; cluster "
            f"`{cluster.name}` runs jobs on 1 to {cluster.max_nodes} nodes."
        )
    reading = read_command(spec.command)
    ahead = [holding for _, holding in cluster_holdings(session, cluster, now)]
    schedule = schedule_job(_shape(cluster), ahead, now, spec.instance_count, reading.run_for)
    row = SimJobRow(
        workspace=workspace,
        name=spec.name,
        compute=cluster.name,
        environment=spec.environment,
        command=spec.command,
        code=spec.code,
        inputs=dict(spec.inputs),
        instance_count=spec.instance_count,
        experiment=spec.experiment,
        display_name=spec.display_name,
        tags=dict(spec.tags),
        created_at=now,
        exit_code=reading.exit_code,
        process=reading.process,
        canceled_at=None,
        created_by=created_by,
    )
    _apply_schedule(row, schedule)
    session.add(row)
    return row


def cancel(session: Session, workspace: str, name: str, now: datetime) -> SimJobRow:
    row = find_job(session, workspace, name)
    status = job_status(_schedule(row), row.exit_code, row.canceled_at, now)
    if status.is_terminal:
        raise ConflictError(
            f"Job {name} has already ended ({status.value}); only a queued, preparing or "
            "running job can be canceled."
        )
    row.canceled_at = now
    row.released_at = now
    session.flush()
    _move_up_waiting_jobs(session, find_cluster(session, workspace, row.compute), now)
    return row


def _move_up_waiting_jobs(session: Session, cluster: SimClusterRow, now: datetime) -> None:
    """Replan the jobs queued for capacity, now that a cancelled job gave its nodes back."""
    jobs = cluster_holdings(session, cluster, now)
    for index, (row, _) in enumerate(jobs):
        if row.canceled_at is not None or row.nodes_at <= now:
            continue
        schedule = schedule_job(
            _shape(cluster),
            [holding for _, holding in jobs[:index]],
            max(row.created_at, now),
            row.instance_count,
            row.finalizing_at - row.running_at,
        )
        _apply_schedule(row, schedule)
        jobs[index] = (row, _holding(row))


def cluster_holdings(
    session: Session, cluster: SimClusterRow, moment: datetime
) -> list[tuple[SimJobRow, Holding]]:
    """The jobs whose nodes matter at `moment`, in submission order: running, waiting, or
    released within the idle time (their nodes may still be up)."""
    window_start = _shape(cluster).window_start(moment)
    rows = session.scalars(
        select(SimJobRow)
        .where(
            SimJobRow.workspace == cluster.workspace,
            SimJobRow.compute == cluster.name,
            SimJobRow.released_at > window_start,
        )
        .order_by(SimJobRow.id)
    ).all()
    return [(row, _holding(row)) for row in rows]


class ClusterFields(Protocol):
    """What a cluster's nodes are worked out from: its ORM row, or a Core row of the same
    table (the compute list reads those, see `cluster_infos`)."""

    @property
    def name(self) -> str: ...
    @property
    def vm_size(self) -> str: ...
    @property
    def priority(self) -> str: ...
    @property
    def min_nodes(self) -> int: ...
    @property
    def max_nodes(self) -> int: ...
    @property
    def idle_seconds_before_scale_down(self) -> int: ...
    @property
    def retired_min_nodes(self) -> int: ...
    @property
    def min_lowered_at(self) -> datetime | None: ...
    @property
    def idle_changed_at(self) -> datetime | None: ...
    @property
    def idle_floor(self) -> datetime | None: ...


class HoldingFields(Protocol):
    """What a job's hold on its cluster's nodes is worked out from (an ORM or Core row)."""

    @property
    def nodes_at(self) -> datetime: ...
    @property
    def released_at(self) -> datetime: ...
    @property
    def instance_count(self) -> int: ...
    @property
    def new_nodes(self) -> int: ...
    @property
    def preparing_at(self) -> datetime: ...


# The compute list's reads, built once and run as Core statements: `/aml compute list`
# reads them on every call, and through the ORM (statements built per call, entities
# loaded into a session) they cost ten times the CPU on SQLite and twice on PostgreSQL.
_CLUSTERS = (
    select(*SimClusterRow.__table__.columns)
    .where(SimClusterRow.workspace == bindparam("workspace"))
    .order_by(SimClusterRow.name)
)
_JOBS_RELEASED_AFTER = (
    select(
        SimJobRow.compute,
        SimJobRow.nodes_at,
        SimJobRow.released_at,
        SimJobRow.instance_count,
        SimJobRow.new_nodes,
        SimJobRow.preparing_at,
    )
    .where(
        SimJobRow.workspace == bindparam("workspace"),
        SimJobRow.released_at > bindparam("after", type_=SimJobRow.released_at.type),
    )
    .order_by(SimJobRow.id)
)
_LAST_RELEASED = (
    select(SimJobRow.compute, func.max(SimJobRow.released_at))
    .where(
        SimJobRow.workspace == bindparam("workspace"),
        # A job cancelled while it waited never kept the cluster busy.
        SimJobRow.nodes_at < SimJobRow.released_at,
    )
    .group_by(SimJobRow.compute)
)


def cluster_infos(connection: Connection, workspace: str, now: datetime) -> list[ClusterInfo]:
    """What Azure's compute list tells of each of the workspace's clusters, in three
    queries whatever their number (the clusters, the jobs that may hold nodes, and when
    each cluster was last busy)."""
    clusters = connection.execute(_CLUSTERS, {"workspace": workspace}).all()
    if not clusters:
        return []
    window_starts = {cluster.name: _shape(cluster).window_start(now) for cluster in clusters}
    jobs = connection.execute(
        _JOBS_RELEASED_AFTER, {"workspace": workspace, "after": min(window_starts.values())}
    )
    holdings: dict[str, list[Holding]] = {name: [] for name in window_starts}
    for job in jobs:
        start = window_starts.get(job.compute)
        if start is not None and job.released_at > start:
            holdings[job.compute].append(_holding(job))
    last_released: dict[str, datetime] = {
        compute: released
        for compute, released in connection.execute(_LAST_RELEASED, {"workspace": workspace})
    }
    return [
        _cluster_info(cluster, holdings[cluster.name], last_released.get(cluster.name), now)
        for cluster in clusters
    ]


def _cluster_info(
    cluster: ClusterFields, holdings: list[Holding], last_released: datetime | None, now: datetime
) -> ClusterInfo:
    nodes = cluster_nodes(_shape(cluster), holdings, now)
    busy_now = any(holding.released_at > now for holding in holdings)
    return ClusterInfo(
        name=cluster.name,
        vm_size=cluster.vm_size,
        priority=Priority(cluster.priority),
        min_nodes=cluster.min_nodes,
        max_nodes=cluster.max_nodes,
        current_nodes=nodes.current_nodes,
        node_state_counts=nodes.node_state_counts,
        idle_seconds_before_scale_down=cluster.idle_seconds_before_scale_down,
        allocation_state=nodes.allocation_state,
        # A job holds or waits for nodes: busy this very moment.
        last_busy_at=now if busy_now else last_released,
    )


def job_info(row: SimJobRow, now: datetime, workspace_scope: str) -> JobInfo:
    status = job_status(_schedule(row), row.exit_code, row.canceled_at, now)
    started = row.running_at <= now and (
        row.canceled_at is None or row.running_at < row.canceled_at
    )
    ended_at = None
    if status is JobStatus.CANCELED:
        ended_at = row.canceled_at
    elif status.is_terminal:
        ended_at = row.ended_at
    failed = status is JobStatus.FAILED
    return JobInfo(
        name=row.name,
        status=status,
        compute=row.compute,
        experiment=row.experiment,
        display_name=row.display_name,
        created_at=row.created_at,
        started_at=row.running_at if started else None,
        ended_at=ended_at,
        studio_url=f"{_STUDIO}/{row.name}?wsid={workspace_scope}",
        error=failure_message(row.process, row.exit_code) if failed else None,
        tags={str(key): str(value) for key, value in row.tags.items()},
        metrics=_metrics(row.name) if status is JobStatus.COMPLETED else {},
        created_by=row.created_by or BOT_IDENTITY,
    )


def _metrics(job_name: str) -> dict[str, float]:
    """Plausible, repeatable metrics: the same job name always reports the same numbers."""
    seed = int.from_bytes(hashlib.sha256(job_name.encode()).digest()[:4], "big")
    accuracy = round(0.9 + (seed % 800) / 10_000, 4)
    return {"accuracy": accuracy, "loss": round((1 - accuracy) * 1.7, 4)}


def _shape(row: ClusterFields) -> ClusterShape:
    return ClusterShape(
        min_nodes=row.min_nodes,
        max_nodes=row.max_nodes,
        idle=timedelta(seconds=row.idle_seconds_before_scale_down),
        retired_min_nodes=row.retired_min_nodes,
        min_lowered_at=row.min_lowered_at,
        idle_changed_at=row.idle_changed_at,
        idle_floor=row.idle_floor,
    )


def _holding(row: HoldingFields) -> Holding:
    return Holding(
        nodes_at=row.nodes_at,
        released_at=row.released_at,
        count=row.instance_count,
        new_nodes=row.new_nodes,
        preparing_at=row.preparing_at,
    )


def _schedule(row: SimJobRow) -> Schedule:
    return Schedule(
        nodes_at=row.nodes_at,
        new_nodes=row.new_nodes,
        preparing_at=row.preparing_at,
        running_at=row.running_at,
        finalizing_at=row.finalizing_at,
        ended_at=row.ended_at,
    )


def _apply_schedule(row: SimJobRow, schedule: Schedule) -> None:
    row.nodes_at = schedule.nodes_at
    row.new_nodes = schedule.new_nodes
    row.preparing_at = schedule.preparing_at
    row.running_at = schedule.running_at
    row.finalizing_at = schedule.finalizing_at
    row.ended_at = schedule.ended_at
    row.released_at = row.canceled_at or schedule.ended_at


def simulated_log_tail(row: SimJobRow) -> list[str]:
    """The end of a failed job's `user_logs/std_log.txt`, as the simulation imagines it."""
    return [
        "[simulated workspace: no command ran; this log is made up]",
        f"Running: {row.command}",
        f"{row.process} exited with status code {row.exit_code}",
    ]
