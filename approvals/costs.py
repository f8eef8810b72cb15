"""What compute costs, estimated before and measured after. The one caller of the price list.

Every price the bot shows goes through `node_hour_price`, so a change of price source
(`workspaces.prices`) touches only that function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from approvals.config import ClusterConfig
from workspaces.prices import PRICE_SOURCE, format_price, hourly_price
from workspaces.types import Priority

# N-series VM sizes (NC, ND, NV, NG) carry GPUs; every other family is CPU only.
_GPU_PREFIXES = ("STANDARD_N",)


def is_gpu(cluster: ClusterConfig) -> bool:
    return cluster.vm_sku.upper().startswith(_GPU_PREFIXES)


def node_hour_price(cluster: ClusterConfig) -> float | None:
    """Estimated USD per node-hour of the cluster's VM at its priority, or None if unknown."""
    return hourly_price(cluster.vm_sku, low_priority=cluster.priority == Priority.LOW_PRIORITY)


def price_source() -> str:
    return PRICE_SOURCE


def money(amount: float | None) -> str:
    return format_price(amount)


def hours(duration: timedelta) -> float:
    return duration.total_seconds() / 3600


@dataclass(frozen=True)
class Estimate:
    """nodes x USD per node-hour x hours; `total` is None when the VM's price is unknown."""

    nodes: int
    node_hour: float | None
    duration: timedelta

    @property
    def total(self) -> float | None:
        if self.node_hour is None:
            return None
        return round(self.nodes * self.node_hour * hours(self.duration), 2)

    def explain(self) -> str:
        """`2 x $3.06/h x 4h = $24.48`: the sum a lead can check."""
        from commands.durations import format_duration

        return (
            f"{self.nodes} node(s) x {money(self.node_hour)}/node-hour x "
            f"{format_duration(self.duration)} = {money(self.total)}"
        )


def job_estimate(cluster: ClusterConfig, instances: int, duration: timedelta) -> Estimate:
    return Estimate(instances, node_hour_price(cluster), duration)


def grant_estimate(cluster: ClusterConfig, duration: timedelta) -> Estimate:
    """The most a grant can cost: the cluster at full size for the whole grant."""
    return Estimate(cluster.nodes, node_hour_price(cluster), duration)
