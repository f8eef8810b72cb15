"""What a simulated workspace holds from the start: its configured computes, the defaults."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from workspaces.local.tables import SimClusterRow, SimDatastoreRow, SimInstanceRow
from workspaces.types import ClusterSpec, InstanceSpec


def seed_workspace(
    session: Session,
    workspace: str,
    clusters: Sequence[ClusterSpec],
    instances: Sequence[InstanceSpec],
    now: datetime,
) -> None:
    """Bring the workspace in line with configuration, keeping what already happened in it."""
    for cluster in clusters:
        _seed_cluster(session, workspace, cluster, now)
    for instance in instances:
        _seed_instance(session, workspace, instance, now)
    for default in default_datastores(workspace, now):
        if session.get(SimDatastoreRow, (workspace, default.name)) is None:
            session.add(default)


def _seed_cluster(session: Session, workspace: str, spec: ClusterSpec, now: datetime) -> None:
    row = session.get(SimClusterRow, (workspace, spec.name))
    if row is None:
        session.add(
            SimClusterRow(
                workspace=workspace,
                name=spec.name,
                vm_size=spec.vm_sku,
                priority=spec.priority.value,
                min_nodes=spec.min_nodes,
                max_nodes=spec.nodes,
                idle_seconds_before_scale_down=spec.idle_seconds_before_scale_down,
                min_nodes_pinned=False,
                retired_min_nodes=0,
                idle_seconds_pinned=False,
                created_at=now,
            )
        )
        return
    row.vm_size = spec.vm_sku
    row.priority = spec.priority.value
    row.max_nodes = spec.nodes
    # A minimum or idle time someone fixed through the bot outlives the (possibly stale)
    # configuration.
    if not row.idle_seconds_pinned:
        row.change_idle_seconds(spec.idle_seconds_before_scale_down, now)
    wanted_min = row.min_nodes if row.min_nodes_pinned else spec.min_nodes
    row.change_min_nodes(min(wanted_min, spec.nodes), now)


def _seed_instance(session: Session, workspace: str, spec: InstanceSpec, now: datetime) -> None:
    row = session.get(SimInstanceRow, (workspace, spec.name))
    if row is None:
        session.add(
            SimInstanceRow(
                workspace=workspace,
                name=spec.name,
                vm_size=spec.vm_sku,
                assigned_user=spec.assigned_to,
                idle_shutdown_minutes=spec.idle_shutdown_minutes,
                state="Running",
                last_activity_at=now,
            )
        )
        return
    row.vm_size = spec.vm_sku
    row.assigned_user = spec.assigned_to
    row.idle_shutdown_minutes = spec.idle_shutdown_minutes


def default_datastores(workspace: str, now: datetime) -> list[SimDatastoreRow]:
    """The four datastores Azure creates with every workspace, identity-based."""
    # Azure names the storage after the workspace plus a random suffix; a suffix derived
    # from the name keeps the simulation repeatable.
    workspace_id = uuid.uuid5(uuid.NAMESPACE_URL, f"amlbot-sim:{workspace}")
    account = re.sub(r"[^a-z0-9]", "", workspace.lower())[:12] + workspace_id.hex[:10]
    defaults = [
        ("workspaceblobstore", "blob", f"azureml-blobstore-{workspace_id}", True),
        ("workspacefilestore", "file", f"azureml-filestore-{workspace_id}", False),
        ("workspaceartifactstore", "blob", "azureml", False),
        ("workspaceworkingdirectory", "file", f"code-{workspace_id}", False),
    ]
    return [
        SimDatastoreRow(
            workspace=workspace,
            name=name,
            kind=kind,
            account=account,
            container=container,
            is_default=is_default,
            credentials="identity",
            description=None,
            tags={},
            created_at=now,
        )
        for name, kind, container, is_default in defaults
    ]
