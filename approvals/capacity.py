"""Whether a GPU request can start: the VM family's quota in the region and the cluster's
free nodes, in one line for the card. Pure."""

from __future__ import annotations

from shared.wording import counted
from workspaces.types import ClusterInfo, VmQuota


def free_nodes(cluster: ClusterInfo) -> int:
    """Nodes a new job could get: the maximum less the nodes busy with other work."""
    busy = cluster.current_nodes - cluster.node_state_counts.get("idle", 0)
    return max(cluster.max_nodes - max(busy, 0), 0)


def capacity_line(quota: VmQuota | None, cluster: ClusterInfo | None, nodes_wanted: int) -> str:
    parts: list[str] = []
    if quota is None:
        parts.append("quota: unknown for this VM size")
    else:
        where = f" in {quota.location}" if quota.location else ""
        parts.append(
            f"{quota.family_label or quota.family}{where}: {quota.used_cores} of "
            f"{quota.limit_cores} cores used, room for "
            f"{counted(quota.nodes_that_fit, 'more node')} of {quota.cores_per_node} cores"
        )
    if cluster is not None:
        parts.append(
            f"cluster {cluster.name}: {free_nodes(cluster)} of "
            f"{counted(cluster.max_nodes, 'node')} free"
        )
    text = "; ".join(parts)
    if quota is not None and quota.nodes_that_fit < nodes_wanted:
        text += (
            f". Warning: this needs {counted(nodes_wanted, 'node')} and the quota has room for "
            f"{quota.nodes_that_fit} more, so it may not start"
        )
    return text
