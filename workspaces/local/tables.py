"""Where the simulated workspaces keep their state: `sim_` tables beside the bot's own.

The simulator stands in for Azure, so its tables are not part of the bot's schema and its
Alembic migrations: `create_simulator_tables` makes them on start. Several workspaces share
one database, so every row carries its workspace's name.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,
    literal,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.schema import ScalarElementColumnDefault

NAME = String(255)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC in and out, stored as naive UTC on SQLite and PostgreSQL alike.

    Naive storage keeps PostgreSQL's session time zone out of the arithmetic and lets SQLite,
    which compares the stored text, order times correctly.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the simulator stores timezone-aware UTC times only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SimBase(DeclarativeBase):
    metadata = MetaData()
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON}


class SimWorkspaceRow(SimBase):
    """One per simulated workspace; mutating calls lock this row to take turns."""

    __tablename__ = "sim_workspaces"

    workspace: Mapped[str] = mapped_column(NAME, primary_key=True)
    seeded_at: Mapped[datetime]
    revision: Mapped[int] = mapped_column(Integer, default=0)


class SimClusterRow(SimBase):
    __tablename__ = "sim_clusters"

    workspace: Mapped[str] = mapped_column(NAME, primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    vm_size: Mapped[str] = mapped_column(NAME)
    priority: Mapped[str] = mapped_column(String(32))
    min_nodes: Mapped[int] = mapped_column(Integer)
    max_nodes: Mapped[int] = mapped_column(Integer)
    idle_seconds_before_scale_down: Mapped[int] = mapped_column(Integer)
    # Once someone changed the minimum through the API, configuration no longer resets it.
    min_nodes_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    # Lowering the minimum leaves the freed nodes idle until the idle time has passed.
    retired_min_nodes: Mapped[int] = mapped_column(Integer, default=0)
    min_lowered_at: Mapped[datetime | None]
    # Like the minimum: once changed through the API, configuration no longer resets it.
    idle_seconds_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the idle time last changed, and the earliest release whose nodes were still up
    # then (see `ClusterShape.window_start`).
    idle_changed_at: Mapped[datetime | None]
    idle_floor: Mapped[datetime | None]
    created_at: Mapped[datetime]

    def change_min_nodes(self, min_nodes: int, now: datetime) -> None:
        if min_nodes < self.min_nodes:
            self.retired_min_nodes = self.min_nodes
            self.min_lowered_at = now
        self.min_nodes = min_nodes

    def change_idle_seconds(self, seconds: int, now: datetime) -> None:
        if seconds == self.idle_seconds_before_scale_down:
            return
        old_start = now - timedelta(seconds=self.idle_seconds_before_scale_down)
        if self.idle_changed_at is not None and self.idle_floor is not None:
            old_start = max(old_start, self.idle_floor)
        self.idle_floor = old_start
        self.idle_changed_at = now
        self.idle_seconds_before_scale_down = seconds


class SimInstanceRow(SimBase):
    __tablename__ = "sim_instances"

    workspace: Mapped[str] = mapped_column(NAME, primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    vm_size: Mapped[str] = mapped_column(NAME)
    assigned_user: Mapped[str | None] = mapped_column(NAME)
    idle_shutdown_minutes: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32))
    last_activity_at: Mapped[datetime]


class SimDatastoreRow(SimBase):
    __tablename__ = "sim_datastores"

    workspace: Mapped[str] = mapped_column(NAME, primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(NAME)
    container: Mapped[str] = mapped_column(NAME)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only the kind of credential: a secret's value never reaches the simulator.
    credentials: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class SimJobRow(SimBase):
    """A command job with its whole schedule, fixed at submission and on cancellations."""

    __tablename__ = "sim_jobs"
    __table_args__ = (
        UniqueConstraint("workspace", "name", name="uq_sim_jobs_workspace_name"),
        Index("ix_sim_jobs_cluster_release", "workspace", "compute", "released_at"),
    )

    # A surrogate key orders jobs submitted within the same clock tick.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(NAME)
    compute: Mapped[str] = mapped_column(NAME)
    environment: Mapped[str] = mapped_column(Text)
    command: Mapped[str] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)
    inputs: Mapped[dict[str, Any]]
    instance_count: Mapped[int] = mapped_column(Integer)
    experiment: Mapped[str] = mapped_column(NAME)
    display_name: Mapped[str | None] = mapped_column(NAME)
    tags: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    nodes_at: Mapped[datetime]
    new_nodes: Mapped[int] = mapped_column(Integer)
    preparing_at: Mapped[datetime]
    running_at: Mapped[datetime]
    finalizing_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    # When the job gives its nodes back: its end, or its cancellation.
    released_at: Mapped[datetime]
    exit_code: Mapped[int] = mapped_column(Integer)
    process: Mapped[str] = mapped_column(NAME)
    canceled_at: Mapped[datetime | None]
    # Who submitted it: the bot's identity, or a person submitting directly (SDK, CLI).
    created_by: Mapped[str | None] = mapped_column(NAME, nullable=True)


class SimRoleAssignmentRow(SimBase):
    __tablename__ = "sim_role_assignments"

    workspace: Mapped[str] = mapped_column(NAME, primary_key=True)
    assignment_name: Mapped[str] = mapped_column(NAME, primary_key=True)
    principal_object_id: Mapped[str] = mapped_column(NAME)
    role_name: Mapped[str] = mapped_column(NAME)
    compute: Mapped[str] = mapped_column(NAME)
    scope: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]


def create_simulator_tables(engine: Engine) -> None:
    """Create the `sim_` tables that are missing, and the columns a newer amlbot added to
    them, tolerating other processes doing the same.

    Creators starting together each see tables missing and race to make them; a CREATE that
    loses fails. Every lost race means another creator made a table or column, so trying
    again (once per table at most, plus spares) always ends with all of them in place.
    """
    attempts = len(SimBase.metadata.tables) + 4
    for attempt in range(attempts):
        try:
            SimBase.metadata.create_all(engine, checkfirst=True)
            _add_missing_columns(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.005, 0.02))


def _add_missing_columns(engine: Engine) -> None:
    """The simulation is not under Alembic (it stands in for Azure), but a state file from
    an earlier amlbot must keep working: a column added since is added to it, filled with
    its default."""
    inspector = inspect(engine)
    with engine.begin() as connection:
        for table in SimBase.metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    connection.execute(text(_add_column_sql(engine, table.name, column)))


def _add_column_sql(engine: Engine, table: str, column: Column[Any]) -> str:
    kind = column.type.compile(dialect=engine.dialect)
    default = column.default
    if not isinstance(default, ScalarElementColumnDefault):
        return f"ALTER TABLE {table} ADD COLUMN {column.name} {kind}"
    value = literal(default.arg, column.type).compile(
        dialect=engine.dialect, compile_kwargs={"literal_binds": True}
    )
    return f"ALTER TABLE {table} ADD COLUMN {column.name} {kind} NOT NULL DEFAULT {value}"
