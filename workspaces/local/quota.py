"""The simulated subscription's Azure ML core quota: per VM family, what Azure's
`usages` and `vmSizes` would say. Usage is the cores of the simulated clusters' nodes."""

from __future__ import annotations

from workspaces.types import ComputeInventory, VmQuota

# VM size -> (family as Azure names it, vCPUs per node), for the sizes the demo uses.
_SIZES: dict[str, tuple[str, int]] = {
    "STANDARD_DS3_V2": ("standardDSv2Family", 4),
    "STANDARD_DS11_V2": ("standardDSv2Family", 2),
    "STANDARD_D4S_V3": ("standardDSv3Family", 4),
    "STANDARD_NC6S_V3": ("standardNCSv3Family", 6),
    "STANDARD_NC12S_V3": ("standardNCSv3Family", 12),
    "STANDARD_NC24ADS_A100_V4": ("standardNCADSA100v4Family", 24),
    "STANDARD_ND96ASR_V4": ("standardNDASv4_A100Family", 96),
}
# A new subscription's default Azure ML quotas are small for GPU families.
_LIMITS: dict[str, int] = {
    "standardNCSv3Family": 24,
    "standardNCADSA100v4Family": 24,
    "standardNDASv4_A100Family": 0,
}
_DEFAULT_LIMIT = 100


def simulated_quota(
    vm_size: str, inventory: ComputeInventory, location: str | None
) -> VmQuota | None:
    found = _SIZES.get(vm_size.upper())
    if found is None:
        return None
    family, cores = found
    used = sum(
        cluster.current_nodes * _SIZES[cluster.vm_size.upper()][1]
        for cluster in inventory.clusters
        if _SIZES.get(cluster.vm_size.upper(), ("", 0))[0] == family
    )
    return VmQuota(
        vm_size=vm_size,
        family=family,
        location=location,
        cores_per_node=cores,
        used_cores=used,
        limit_cores=_LIMITS.get(family, _DEFAULT_LIMIT),
    )
