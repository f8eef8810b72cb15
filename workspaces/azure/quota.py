"""A VM size's core quota and usage in the workspace's region, through azure-ai-ml:
`compute.list_sizes()` names the size's family and vCPUs, `compute.list_usage()` the
family's cores used and allowed (both default to the workspace's location).
"""

from __future__ import annotations

from typing import Any

from workspaces.azure.clients import WorkspaceClients
from workspaces.azure.errors import translated
from workspaces.types import VmQuota


def vm_quota(clients: WorkspaceClients, vm_size: str) -> VmQuota | None:
    ml = clients.ml()
    workspace = clients.coordinates.workspace_name
    with translated(f"reading the VM sizes offered to workspace {workspace}"):
        sizes = list(ml.compute.list_sizes())
    size = next((s for s in sizes if (s.name or "").upper() == vm_size.upper()), None)
    if size is None or not size.family:
        return None
    with translated(f"reading the Azure ML quota and usage for workspace {workspace}"):
        usages = list(ml.compute.list_usage())
    usage = next((u for u in usages if _name(u.name)[0] == size.family), None)
    if usage is None:
        return None
    return VmQuota(
        vm_size=vm_size,
        family=size.family,
        family_label=_name(usage.name)[1],
        location=_field(usage, "aml_workspace_location", "amlWorkspaceLocation"),
        cores_per_node=int(_field(size, "v_cp_us", "vCPUs") or 0),
        used_cores=int(_field(usage, "current_value", "currentValue") or 0),
        limit_cores=int(_field(usage, "limit", "limit") or 0),
    )


def _field(entity: Any, attribute: str, rest_key: str) -> Any:
    """azure-ai-ml 1.x builds `VmSize` and `Usage` by copying the REST body's `as_dict()`
    into the entity, so a camelCase field (`vCPUs`, `currentValue`) lands under its REST
    name and the documented attribute stays None."""
    value = getattr(entity, attribute, None)
    return value if value is not None else getattr(entity, rest_key, None)


def _name(name: Any) -> tuple[str | None, str | None]:
    """(value, localized value) of a usage's name: azure-ai-ml's `Usage` keeps the REST
    `{"value", "localizedValue"}` as it came (a dict), or a `UsageName` object."""
    if isinstance(name, dict):
        return name.get("value"), name.get("localizedValue") or name.get("localized_value")
    if name is None:
        return None, None
    return getattr(name, "value", None), getattr(name, "localized_value", None)
