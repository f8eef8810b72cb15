"""Idle-compute detection: a pure function of an inventory, the policy and the time.

What counts as idle, and why it matters (see DOMAIN.md: compute is the expensive part):
- a cluster with nodes up and no job on them for longer than `idle_threshold`;
- a cluster whose minimum nodes is above zero (those nodes never scale down), or which
  waits longer than `max_idle_seconds_before_scale_down` before scaling down;
- a compute instance running with no activity for longer than `idle_threshold`, where the
  workspace reports activity (the simulation does);
- on Azure, which reports no activity at all: a compute instance running for longer than
  `idle_threshold` whose idle shutdown is unset or longer than `max_idle_shutdown_minutes`.
  Its finding says only what Azure tells (running since its last Start, the idle shutdown
  setting) and what the bot knows (jobs it follows on it); never that it is inactive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from approvals.config_policy import IdlePolicy
from approvals.wording import when
from commands.durations import format_duration
from shared.wording import counted
from workspaces.prices import PriceQuote, price_for
from workspaces.types import ClusterInfo, ComputeInventory, InstanceInfo, Priority

ComputeKind = Literal["cluster", "instance"]


@dataclass(frozen=True)
class IdleFinding:
    compute: str
    kind: ComputeKind
    vm_size: str
    reasons: tuple[str, ...]
    idle_since: datetime | None  # None: not idle now (a configuration finding only)
    idle_nodes: int
    min_nodes: int
    hourly_cost: float | None  # USD per hour of what idles now, or of the minimum nodes
    cost_so_far: float | None  # USD since `idle_since`
    # What "until changed" compares: configuration for a cluster (its nodes come and go
    # with jobs), size and state for an instance (stopping it is the change).
    fingerprint: str
    # A cluster's idle time before scale-down, and, when policy finds it too long, the
    # value the fix sets: kept with the finding so the button does what its label said.
    idle_seconds_before_scale_down: int | None = None
    idle_seconds_fix: int | None = None
    # An instance's idle shutdown (minutes; None: not set), and what the fix sets.
    idle_shutdown_minutes: int | None = None
    idle_shutdown_fix: int | None = None
    # Where the price came from and how old it was when the finding was made.
    price_note: str | None = None

    @property
    def can_stop(self) -> bool:
        return self.kind == "instance"

    @property
    def can_set_idle_shutdown(self) -> bool:
        return self.kind == "instance" and self.idle_shutdown_fix is not None

    @property
    def idle_shutdown_label(self) -> str | None:
        """The label of the second button an instance may have; None without one."""
        if not self.can_set_idle_shutdown:
            return None
        return f"Set idle shutdown to {self.idle_shutdown_fix} min"

    @property
    def can_set_min_zero(self) -> bool:
        return self.kind == "cluster" and self.min_nodes > 0

    @property
    def can_set_idle_time(self) -> bool:
        # Nodes held by a minimum above 0 never scale down, whatever the idle time: that
        # fix comes first, and the next digest offers this one.
        return self.kind == "cluster" and self.min_nodes == 0 and self.idle_seconds_fix is not None

    @property
    def fix_label(self) -> str | None:
        """The label of the item's fix button; None when there is nothing to fix."""
        if self.can_stop:
            return "Stop instance"
        if self.can_set_min_zero:
            return "Set minimum to 0"
        if self.can_set_idle_time and self.idle_seconds_fix is not None:
            return f"Set idle time to {_short_seconds(self.idle_seconds_fix)}"
        return None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        data["idle_since"] = self.idle_since.isoformat() if self.idle_since else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IdleFinding:
        since = data.get("idle_since")
        return cls(
            compute=str(data["compute"]),
            kind="instance" if data["kind"] == "instance" else "cluster",
            vm_size=str(data["vm_size"]),
            reasons=tuple(str(r) for r in data.get("reasons", [])),
            idle_since=datetime.fromisoformat(since) if since else None,
            idle_nodes=int(data.get("idle_nodes", 0)),
            min_nodes=int(data.get("min_nodes", 0)),
            hourly_cost=data.get("hourly_cost"),
            cost_so_far=data.get("cost_so_far"),
            fingerprint=str(data["fingerprint"]),
            # Findings stored before the idle-time fix existed lack these: no button then.
            idle_seconds_before_scale_down=_optional_int(
                data.get("idle_seconds_before_scale_down")
            ),
            idle_seconds_fix=_optional_int(data.get("idle_seconds_fix")),
            idle_shutdown_minutes=_optional_int(data.get("idle_shutdown_minutes")),
            idle_shutdown_fix=_optional_int(data.get("idle_shutdown_fix")),
            price_note=data.get("price_note"),
        )


def _short_seconds(seconds: int) -> str:
    """Button text is short: "2 min", "90 s"."""
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def cluster_fingerprint(cluster: ClusterInfo) -> str:
    return (
        f"cluster|{cluster.vm_size}|min={cluster.min_nodes}"
        f"|idle={cluster.idle_seconds_before_scale_down}"
    )


def instance_fingerprint(instance: InstanceInfo) -> str:
    # Setting idle shutdown is a change too: "until changed" ends with it.
    return f"instance|{instance.vm_size}|{instance.state}|shutdown={instance.idle_shutdown_minutes}"


def _idle_nodes(cluster: ClusterInfo) -> tuple[int, bool]:
    """(nodes up with nothing on them, whether any job holds nodes)."""
    counts = cluster.node_state_counts
    working = counts.get("running", 0) + counts.get("preparing", 0)
    idle = counts.get("idle", max(cluster.current_nodes - working, 0))
    return idle, working > 0


def idle_without_known_start(inventory: ComputeInventory) -> set[str]:
    """Computes idle now whose idle start Azure does not report; the sweep remembers when it
    first saw each, and passes that back in as `seen_since`."""
    names = set()
    for cluster in inventory.clusters:
        idle, busy = _idle_nodes(cluster)
        if idle > 0 and not busy and cluster.last_busy_at is None:
            names.add(cluster.name)
    for instance in inventory.instances:
        if (
            instance.state == "Running"
            and instance.last_activity_at is None
            and instance.running_since is None
        ):
            names.add(instance.name)
    return names


def find_idle(
    inventory: ComputeInventory,
    policy: IdlePolicy,
    now: datetime,
    seen_since: Mapping[str, datetime] | None = None,
    *,
    region: str | None = None,
    jobs_on: Mapping[str, Sequence[str]] | None = None,
) -> list[IdleFinding]:
    """Every compute that idles or is set up to idle, in inventory order. `region` prices
    them; `jobs_on` names the jobs the bot follows that run on each compute now."""
    seen = seen_since or {}
    jobs = jobs_on or {}
    findings = [_cluster(c, policy, now, seen.get(c.name), region) for c in inventory.clusters]
    findings += [
        _instance(i, policy, now, seen.get(i.name), region, jobs.get(i.name, ()))
        for i in inventory.instances
    ]
    return [finding for finding in findings if finding is not None]


def _note(quote: PriceQuote | None, now: datetime) -> str | None:
    return None if quote is None else quote.provenance(now.date())


def _cluster(
    cluster: ClusterInfo,
    policy: IdlePolicy,
    now: datetime,
    seen: datetime | None,
    region: str | None,
) -> IdleFinding | None:
    idle, busy = _idle_nodes(cluster)
    since = None if busy or idle == 0 else (cluster.last_busy_at or seen)
    idling = since is not None and now - since >= policy.idle_threshold
    reasons = []
    if idling and since is not None:
        reasons.append(f"{counted(idle, 'node')} up with no job since {when(since)}")
    if cluster.min_nodes > 0:
        reasons.append(
            f"minimum nodes is {cluster.min_nodes}, so they never scale down (recommended: 0)"
        )
    idle_setting = cluster.idle_seconds_before_scale_down
    idle_fix = None
    if idle_setting is not None and idle_setting > policy.max_idle_seconds_before_scale_down:
        idle_fix = policy.recommended_idle_seconds_before_scale_down
        reasons.append(
            f"idle nodes wait {format_duration(timedelta(seconds=idle_setting))} before "
            f"scaling down (policy: at most "
            f"{format_duration(timedelta(seconds=policy.max_idle_seconds_before_scale_down))})"
        )
    if not reasons:
        return None
    quote = price_for(
        cluster.vm_size, region, low_priority=cluster.priority == Priority.LOW_PRIORITY
    )
    price = None if quote is None else quote.usd_per_hour
    costly_nodes = idle if idling else cluster.min_nodes
    hourly = None if price is None else round(price * costly_nodes, 4)
    return IdleFinding(
        compute=cluster.name,
        kind="cluster",
        vm_size=cluster.vm_size,
        reasons=tuple(reasons),
        idle_since=since if idling else None,
        idle_nodes=idle if idling else 0,
        min_nodes=cluster.min_nodes,
        hourly_cost=hourly,
        cost_so_far=_so_far(hourly, since, now) if idling else None,
        fingerprint=cluster_fingerprint(cluster),
        idle_seconds_before_scale_down=idle_setting,
        idle_seconds_fix=idle_fix,
        price_note=_note(quote, now),
    )


def _instance(
    instance: InstanceInfo,
    policy: IdlePolicy,
    now: datetime,
    seen: datetime | None,
    region: str | None,
    jobs: Sequence[str],
) -> IdleFinding | None:
    if instance.state != "Running":
        return None
    shutdown = instance.idle_shutdown_minutes
    shutdown_too_long = shutdown is None or shutdown > policy.max_idle_shutdown_minutes
    shutdown_fix = policy.recommended_idle_shutdown_minutes if shutdown_too_long else None
    quote = price_for(instance.vm_size, region)
    hourly = None if quote is None else quote.usd_per_hour
    if instance.last_activity_at is not None:
        # The workspace reports activity (the simulation): idle means unused that long.
        since = instance.last_activity_at
        if now - since < policy.idle_threshold:
            return None
        reasons = [f"running with no activity since {when(since)}", _shutdown_words(shutdown)]
        idle_since: datetime | None = since
        cost_from: datetime | None = since
    else:
        # Azure reports no activity: say how long it has run and how it is set up, no more.
        started = instance.running_since
        cost_from = started or seen
        if cost_from is None or now - cost_from < policy.idle_threshold or not shutdown_too_long:
            return None
        ran = format_duration(now - cost_from)
        reasons = [
            f"running for {ran} (since {instance.last_operation or 'its last start'} at "
            f"{when(cost_from)})"
            if started is not None
            else f"running for at least {ran} (first seen running {when(cost_from)})",
            _shutdown_words(shutdown),
        ]
        idle_since = None
    if shutdown is not None and shutdown_too_long:
        reasons[-1] += f" (policy: at most {policy.max_idle_shutdown_minutes} min)"
    reasons.append(
        f"{'job' if len(jobs) == 1 else 'jobs'} the bot follows on it: "
        f"{', '.join(f'`{j}`' for j in jobs)}"
        if jobs
        else "no job the bot follows runs on it"
    )
    return IdleFinding(
        compute=instance.name,
        kind="instance",
        vm_size=instance.vm_size,
        reasons=tuple(reasons),
        idle_since=idle_since,
        idle_nodes=1,
        min_nodes=0,
        hourly_cost=hourly,
        cost_so_far=_so_far(hourly, cost_from, now),
        fingerprint=instance_fingerprint(instance),
        idle_shutdown_minutes=shutdown,
        idle_shutdown_fix=shutdown_fix,
        price_note=_note(quote, now),
    )


def _shutdown_words(minutes: int | None) -> str:
    if minutes is None:
        return "no idle shutdown is set"
    return f"idle shutdown after {minutes} min"


def _so_far(hourly: float | None, since: datetime | None, now: datetime) -> float | None:
    if hourly is None or since is None:
        return None
    return round(hourly * max((now - since).total_seconds(), 0) / 3600, 2)
