"""What compute costs, estimated before and measured after. The one caller of the price list.

Every price the bot shows goes through `node_hour_price`, so a change of price source
(`workspaces.prices`) touches only that function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from approvals.config import ClusterConfig
from shared.wording import counted
from workspaces.prices import PRICE_SOURCE, PriceQuote, format_price, price_for
from workspaces.types import Priority

# N-series VM sizes (NC, ND, NV, NG) carry GPUs; every other family is CPU only.
_GPU_PREFIXES = ("STANDARD_N",)


def is_gpu(cluster: ClusterConfig) -> bool:
    return cluster.vm_sku.upper().startswith(_GPU_PREFIXES)


def node_hour_quote(cluster: ClusterConfig, region: str | None = None) -> PriceQuote | None:
    """The price of one node of the cluster's VM at its priority in the workspace's `region`,
    with where it came from and how old it is; None if unknown."""
    return price_for(cluster.vm_sku, region, low_priority=cluster.priority == Priority.LOW_PRIORITY)


def node_hour_price(cluster: ClusterConfig, region: str | None = None) -> float | None:
    """Estimated USD per node-hour of the cluster's VM at its priority, or None if unknown."""
    quote = node_hour_quote(cluster, region)
    return None if quote is None else quote.usd_per_hour


def price_source(cluster: ClusterConfig | None = None, region: str | None = None) -> str:
    """Where the cluster's price comes from and how old it is ("Retail Prices, 2 days old,
    eastus"); without a cluster, the kind of prices only."""
    if cluster is None:
        return PRICE_SOURCE
    quote = node_hour_quote(cluster, region)
    return "no price known" if quote is None else quote.provenance()


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
    source: str = ""  # where the node-hour price came from and how old it was

    @property
    def total(self) -> float | None:
        if self.node_hour is None:
            return None
        return round(self.nodes * self.node_hour * hours(self.duration), 2)

    def explain(self) -> str:
        """`2 nodes x $3.06/node-hour x 4h = $24.48`: the sum a lead can check; or why there
        is none."""
        from commands.durations import format_duration

        if self.node_hour is None:
            return (
                f"unknown: no price is known for this VM size in this region "
                f"({counted(self.nodes, 'node')} x {format_duration(self.duration)})"
            )
        return (
            f"{counted(self.nodes, 'node')} x {money(self.node_hour)}/node-hour x "
            f"{format_duration(self.duration)} = {money(self.total)}"
        )


def _estimate(
    cluster: ClusterConfig, nodes: int, duration: timedelta, region: str | None
) -> Estimate:
    quote = node_hour_quote(cluster, region)
    if quote is None:
        return Estimate(nodes, None, duration, "no price known")
    return Estimate(nodes, quote.usd_per_hour, duration, quote.provenance())


def job_estimate(
    cluster: ClusterConfig, instances: int, duration: timedelta, region: str | None = None
) -> Estimate:
    return _estimate(cluster, instances, duration, region)


def grant_estimate(
    cluster: ClusterConfig, duration: timedelta, region: str | None = None
) -> Estimate:
    """The most a grant can cost: the cluster at full size for the whole grant."""
    return _estimate(cluster, cluster.nodes, duration, region)
