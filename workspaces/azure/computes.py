"""Computes: the inventory in one call, stopping an instance, a cluster's minimum nodes.

The inventory is read from the raw ARM list, not through azure-ai-ml: its `AmlCompute`
entity drops `currentNodeCount`, `nodeStateCounts` and `allocationState`, which idle
detection needs, and `compute.list_nodes()` returns nodes whose state is always None.
One list call per workspace (plus one per extra page), never one per compute.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from shared.errors import NotFoundError, WorkspaceError
from workspaces.azure.clients import WorkspaceClients
from workspaces.azure.errors import translated
from workspaces.types import (
    ClusterInfo,
    ComputeInventory,
    InstanceInfo,
    Priority,
    check_idle_shutdown_minutes,
)

COMPUTE_API_VERSION = "2024-04-01"

# Azure's nodeStateCounts keys -> the names ClusterInfo documents.
_NODE_STATES = {
    "idleNodeCount": "idle",
    "runningNodeCount": "running",
    "preparingNodeCount": "preparing",
    "unusableNodeCount": "unusable",
    "leavingNodeCount": "leaving",
    "preemptedNodeCount": "preempted",
}
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def iso_duration_seconds(value: str | None) -> int | None:
    """Seconds in an ISO-8601 duration such as Azure's `PT3M20S`; None if absent or odd."""
    if not value:
        return None
    found = _ISO_DURATION.match(value.strip().upper())
    if found is None:
        return None
    days, hours, minutes, seconds = (float(found.group(k) or 0) for k in "dhms")
    return int(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def list_computes(clients: WorkspaceClients) -> ComputeInventory:
    scope = clients.coordinates.workspace_scope
    with translated(f"listing the computes of workspace {clients.coordinates.workspace_name}"):
        items = clients.arm().list_all(
            f"{scope}/computes", params={"api-version": COMPUTE_API_VERSION}
        )
    clusters: list[ClusterInfo] = []
    instances: list[InstanceInfo] = []
    others: dict[str, str] = {}
    for item in items:
        props = item.get("properties") or {}
        kind = props.get("computeType", "Unknown")
        inner = props.get("properties") or {}
        if kind == "AmlCompute":
            clusters.append(_cluster(item["name"], inner))
        elif kind == "ComputeInstance":
            instances.append(_instance(item["name"], inner))
        else:
            others[item["name"]] = kind
    return ComputeInventory(clusters=clusters, instances=instances, others=others)


def _cluster(name: str, inner: dict[str, Any]) -> ClusterInfo:
    scale = inner.get("scaleSettings") or {}
    counts = inner.get("nodeStateCounts") or {}
    priority = (
        Priority.LOW_PRIORITY
        if str(inner.get("vmPriority", "")).lower() == "lowpriority"
        else Priority.DEDICATED
    )
    return ClusterInfo(
        name=name,
        vm_size=inner.get("vmSize") or "unknown",
        priority=priority,
        min_nodes=int(scale.get("minNodeCount") or 0),
        max_nodes=int(scale.get("maxNodeCount") or 0),
        current_nodes=int(inner.get("currentNodeCount") or 0),
        node_state_counts={
            ours: int(counts.get(theirs) or 0) for theirs, ours in _NODE_STATES.items()
        },
        idle_seconds_before_scale_down=iso_duration_seconds(
            scale.get("nodeIdleTimeBeforeScaleDown")
        ),
        allocation_state=inner.get("allocationState"),
    )


def _instance(name: str, inner: dict[str, Any]) -> InstanceInfo:
    personal = inner.get("personalComputeInstanceSettings") or {}
    assigned = (personal.get("assignedUser") or {}).get("objectId")
    idle = iso_duration_seconds(inner.get("idleTimeBeforeShutdown"))
    last = inner.get("lastOperation") or {}
    # Azure reports no activity on an instance; its last operation says since when it runs.
    return InstanceInfo(
        name=name,
        vm_size=inner.get("vmSize") or "unknown",
        state=inner.get("state") or "Unknown",
        assigned_user=assigned,
        idle_shutdown_minutes=None if idle is None else idle // 60,
        last_operation=last.get("operationName"),
        last_operation_at=_timestamp(last.get("operationTime")),
        last_operation_status=last.get("operationStatus"),
    )


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def set_instance_idle_shutdown(clients: WorkspaceClients, name: str, minutes: int) -> None:
    """POST .../computes/{name}/updateIdleShutdownSetting {"idleTimeBeforeShutdown": "PT30M"}
    (azure-ai-ml has no call for it; Azure answers 200 with no body)."""
    workspace = clients.coordinates.workspace_name
    check_idle_shutdown_minutes(name, minutes)
    scope = clients.coordinates.compute_scope(name)
    with translated(
        f"setting the idle shutdown of compute instance {name} in workspace {workspace}"
    ):
        clients.arm().request(
            "POST",
            f"{scope}/updateIdleShutdownSetting",
            params={"api-version": COMPUTE_API_VERSION},
            json={"idleTimeBeforeShutdown": f"PT{minutes}M"},
        )


def stop_instance(clients: WorkspaceClients, name: str) -> None:
    workspace = clients.coordinates.workspace_name
    with translated(f"stopping compute instance {name} in workspace {workspace}"):
        ml = clients.ml()
        compute = _get_compute(ml, name, workspace)
        if compute.type != "computeinstance":
            raise WorkspaceError(
                f"{name} is a {compute.type}, not a compute instance; only instances can be "
                "stopped (set a cluster's minimum nodes to 0 instead)."
            )
        if (compute.state or "").lower() in {"stopped", "stopping"}:
            return  # already where we want it: stopping again would be a 409
        ml.compute.begin_stop(name).result()


def set_cluster_min_nodes(clients: WorkspaceClients, name: str, min_nodes: int) -> None:
    workspace = clients.coordinates.workspace_name
    if min_nodes < 0:
        raise WorkspaceError(f"A cluster's minimum nodes cannot be negative (got {min_nodes}).")
    with translated(f"setting the minimum nodes of cluster {name} in workspace {workspace}"):
        ml = clients.ml()
        cluster = _get_cluster(ml, name, workspace)
        if cluster.min_instances == min_nodes:
            return
        if min_nodes > (cluster.max_instances or 0):
            raise WorkspaceError(
                f"Cluster {name} has at most {cluster.max_instances} nodes; its minimum cannot "
                f"be {min_nodes}."
            )
        cluster.min_instances = min_nodes
        # azure-ai-ml updates a cluster by PUT of the entity; Azure only lets scale settings
        # change on an existing cluster, which is all that changed here.
        ml.compute.begin_update(cluster).result()


def set_cluster_idle_time(clients: WorkspaceClients, name: str, seconds: int) -> None:
    workspace = clients.coordinates.workspace_name
    if seconds < 0:
        raise WorkspaceError(
            f"A cluster's idle time before scale-down cannot be negative (got {seconds} s)."
        )
    if seconds == 0:
        # azure-ai-ml leaves a falsy idle time out of the request, and Azure would then keep
        # the current one: refuse rather than report a change that did not happen.
        raise WorkspaceError(
            f"Cluster {name}: an idle time of 0 s cannot be set through azure-ai-ml; use 1 s "
            "or more."
        )
    with translated(f"setting the idle time of cluster {name} in workspace {workspace}"):
        ml = clients.ml()
        cluster = _get_cluster(ml, name, workspace)
        if cluster.idle_time_before_scale_down == seconds:
            return
        cluster.idle_time_before_scale_down = seconds
        # Same PUT as for the minimum: scale settings are what Azure lets change in place.
        ml.compute.begin_update(cluster).result()


def _get_cluster(ml: Any, name: str, workspace: str) -> Any:
    cluster = _get_compute(ml, name, workspace)
    if cluster.type != "amlcompute":
        raise WorkspaceError(f"{name} is a {cluster.type}, not a compute cluster.")
    return cluster


def _get_compute(ml: Any, name: str, workspace: str) -> Any:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return ml.compute.get(name)
    except ResourceNotFoundError:
        raise NotFoundError(f"There is no compute named {name} in workspace {workspace}.") from None
