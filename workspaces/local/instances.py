"""Compute instances as the simulated workspace reads them: the state Azure would report
(an idle shutdown stops an instance nobody has used for its set minutes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, select

from workspaces.local.tables import SimInstanceRow
from workspaces.types import InstanceInfo


class InstanceFields(Protocol):
    """What an instance's state is worked out from (an ORM or a Core row)."""

    @property
    def name(self) -> str: ...
    @property
    def vm_size(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def assigned_user(self) -> str | None: ...
    @property
    def idle_shutdown_minutes(self) -> int | None: ...
    @property
    def last_activity_at(self) -> datetime: ...


INSTANCES_IN_WORKSPACE = (
    select(*SimInstanceRow.__table__.columns)
    .where(SimInstanceRow.workspace == bindparam("workspace"))
    .order_by(SimInstanceRow.name)
)


def instance_state(row: InstanceFields, now: datetime) -> str:
    # Azure's idle shutdown stops an instance nobody has used for that long.
    if (
        row.state == "Running"
        and row.idle_shutdown_minutes is not None
        and now >= row.last_activity_at + timedelta(minutes=row.idle_shutdown_minutes)
    ):
        return "Stopped"
    return row.state


def instance_info(row: InstanceFields, now: datetime) -> InstanceInfo:
    return InstanceInfo(
        name=row.name,
        vm_size=row.vm_size,
        state=instance_state(row, now),
        assigned_user=row.assigned_user,
        idle_shutdown_minutes=row.idle_shutdown_minutes,
        last_activity_at=row.last_activity_at,
    )
