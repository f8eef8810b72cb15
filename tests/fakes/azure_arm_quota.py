"""Azure ML usages and quotas in the fake: the VM sizes a location offers and the cores each
VM family uses and may use, in the documented response shapes.

- `GET /subscriptions/S/providers/Microsoft.MachineLearningServices/locations/L/vmSizes`
  `{"value": [{"name", "family", "vCPUs", "gpus", "memoryGB", "lowPriorityCapable",
  "supportedComputeTypes", ...}]}` (action `.../locations/vmsizes/read`);
- `GET .../locations/L/usages`: `{"value": [{"id", "amlWorkspaceLocation", "type", "unit",
  "currentValue", "limit", "name": {"value", "localizedValue"}}]}`, one per VM family's cores
  (action `.../locations/usages/read`). Used cores are the fake's clusters' current nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.azure_arm_state import ML, FakeResponse

if TYPE_CHECKING:
    from tests.fakes.azure_arm import FakeAzure, Request

LOCATION = r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices/locations/(?P<loc>[^/]+)"
# What azure-ai-ml 1.x sends for `compute.list_sizes()` and `compute.list_usage()`.
QUOTA_VERSIONS = {"2023-08-01-preview", "2024-04-01"}

# name -> (family, vCPUs, GPUs, memory GB)
VM_SIZES: dict[str, tuple[str, int, int, float]] = {
    "Standard_DS3_v2": ("standardDSv2Family", 4, 0, 14),
    "Standard_DS11_v2": ("standardDSv2Family", 2, 0, 14),
    "Standard_NC6s_v3": ("standardNCSv3Family", 6, 1, 112),
    "Standard_NC12s_v3": ("standardNCSv3Family", 12, 2, 224),
    "Standard_NC24ads_A100_v4": ("standardNCADSA100v4Family", 24, 1, 220),
}
FAMILY_LABELS = {
    "standardDSv2Family": "Standard DSv2 Family Cores",
    "standardNCSv3Family": "Standard NCSv3 Family Cores",
    "standardNCADSA100v4Family": "Standard NCADS_A100_v4 Family Cores",
}
DEFAULT_LIMITS = {"standardDSv2Family": 100, "standardNCSv3Family": 24}


def register(fake: FakeAzure) -> None:
    fake.route(
        "GET",
        f"{LOCATION}/vmSizes",
        list_vm_sizes,
        api_versions=QUOTA_VERSIONS,
        action=f"{ML}/locations/vmsizes/read",
    )
    fake.route(
        "GET",
        f"{LOCATION}/usages",
        list_usages,
        api_versions=QUOTA_VERSIONS,
        action=f"{ML}/locations/usages/read",
    )


def list_vm_sizes(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    return FakeResponse(
        200,
        {
            "value": [
                {
                    "name": name,
                    "family": family,
                    "vCPUs": cores,
                    "gpus": gpus,
                    "osVhdSizeMB": 1047552,
                    "maxResourceVolumeMB": 28672,
                    "memoryGB": memory,
                    "lowPriorityCapable": True,
                    "premiumIO": True,
                    "supportedComputeTypes": ["AmlCompute", "ComputeInstance"],
                }
                for name, (family, cores, gpus, memory) in VM_SIZES.items()
            ]
        },
    )


def used_cores(fake: FakeAzure, location: str) -> dict[str, int]:
    by_size = {name.lower(): (family, cores) for name, (family, cores, _, _) in VM_SIZES.items()}
    used: dict[str, int] = {}
    with fake.lock:
        for ws in fake.workspaces.values():
            if ws.location.lower() != location.lower():
                continue
            for body in ws.computes.values():
                props: dict[str, Any] = body.get("properties", {}).get("properties") or {}
                size = by_size.get(str(props.get("vmSize", "")).lower())
                if size is None:
                    continue
                family, cores = size
                nodes = int(props.get("currentNodeCount") or 0)
                used[family] = used.get(family, 0) + nodes * cores
    return used


def list_usages(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    location = m["loc"]
    used = used_cores(fake, location)
    limits = {**DEFAULT_LIMITS, **fake.quota_limits}
    return FakeResponse(
        200,
        {
            "value": [
                {
                    "id": f"/subscriptions/{m['sub']}/providers/{ML}/locations/{location}"
                    f"/usages/{family}",
                    "amlWorkspaceLocation": location,
                    "type": f"{ML}/totalCores/usages",
                    "unit": "Count",
                    "currentValue": used.get(family, 0),
                    "limit": limit,
                    "name": {"value": family, "localizedValue": FAMILY_LABELS.get(family, family)},
                }
                for family, limit in sorted(limits.items())
            ]
        },
    )
