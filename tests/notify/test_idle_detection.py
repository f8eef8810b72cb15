"""Idle-compute detection as a pure function: an inventory, the policy and the time in,
exactly the computes that idle (or are set up to idle) out, with their estimated cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from approvals.config_policy import IdlePolicy
from approvals.idle.detection import IdleFinding, find_idle, idle_without_known_start
from workspaces.prices import BOOK, PriceQuote
from workspaces.types import ClusterInfo, ComputeInventory, InstanceInfo, Priority

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
POLICY = IdlePolicy(idle_threshold=timedelta(minutes=30), max_idle_seconds_before_scale_down=600)
DS3 = 0.293  # STANDARD_DS3_V2 in eastus, USD per node-hour in the shipped price snapshot


def cluster(name: str = "cpu", **fields: Any) -> ClusterInfo:
    values: dict[str, Any] = {
        "name": name,
        "vm_size": "STANDARD_DS3_V2",
        "priority": Priority.DEDICATED,
        "min_nodes": 0,
        "max_nodes": 4,
        "current_nodes": 0,
        "node_state_counts": {"idle": 0, "running": 0, "preparing": 0},
        "idle_seconds_before_scale_down": 120,
    }
    values.update(fields)
    return ClusterInfo(**values)


def idle_cluster(nodes: int, since: datetime | None, **fields: Any) -> ClusterInfo:
    counts = {"idle": nodes, "running": 0, "preparing": 0}
    return cluster(current_nodes=nodes, node_state_counts=counts, last_busy_at=since, **fields)


def instance(
    state: str = "Running", activity: datetime | None = None, **fields: Any
) -> InstanceInfo:
    values: dict[str, Any] = {"name": "nb", "vm_size": "STANDARD_DS11_V2", "state": state}
    values.update(fields)
    return InstanceInfo(last_activity_at=activity, **values)


def found(
    *clusters: ClusterInfo, instances: tuple[InstanceInfo, ...] = (), **kw: Any
) -> list[IdleFinding]:
    inventory = ComputeInventory(clusters=list(clusters), instances=list(instances))
    return find_idle(inventory, POLICY, NOW, **kw)


def test_nodes_up_with_no_job_past_the_threshold_are_idle_with_their_cost() -> None:
    (finding,) = found(idle_cluster(2, since=NOW - timedelta(hours=2)))
    assert finding.compute == "cpu" and finding.idle_since == NOW - timedelta(hours=2)
    assert finding.reasons == ("2 nodes up with no job since 2026-01-05 10:00 UTC",)
    assert finding.hourly_cost == round(2 * DS3, 4)
    assert finding.cost_so_far == round(2 * DS3 * 2, 2)
    assert not finding.can_set_min_zero and not finding.can_stop


def test_nodes_idle_for_less_than_the_threshold_are_not_reported() -> None:
    assert found(idle_cluster(2, since=NOW - timedelta(minutes=29))) == []


def test_a_cluster_running_a_job_is_not_idle() -> None:
    busy = cluster(current_nodes=2, node_state_counts={"idle": 1, "running": 1}, last_busy_at=NOW)
    assert found(busy) == []


def test_a_minimum_above_zero_is_reported_even_while_busy_at_the_cost_of_that_minimum() -> None:
    busy = cluster(min_nodes=1, current_nodes=2, node_state_counts={"running": 2}, last_busy_at=NOW)
    (finding,) = found(busy)
    assert finding.reasons == ("minimum nodes is 1, so they never scale down (recommended: 0)",)
    assert finding.hourly_cost == DS3 and finding.cost_so_far is None
    assert finding.can_set_min_zero


def test_a_long_idle_time_before_scale_down_is_reported() -> None:
    (finding,) = found(cluster(idle_seconds_before_scale_down=3600))
    assert finding.reasons == ("idle nodes wait 1h before scaling down (policy: at most 10m)",)


def test_a_running_instance_without_activity_past_the_threshold_is_idle() -> None:
    (finding,) = found(instances=(instance(activity=NOW - timedelta(hours=3)),))
    assert finding.kind == "instance" and finding.can_stop
    assert finding.reasons == (
        "running with no activity since 2026-01-05 09:00 UTC",
        "no idle shutdown is set",
        "no job the bot follows runs on it",
    )
    assert (finding.hourly_cost, finding.cost_so_far) == (0.185, 0.56)  # 3 h at $0.185
    assert finding.price_note == "snapshot of 2024-01-01, eastus"
    assert finding.idle_shutdown_label == "Set idle shutdown to 30 min"


def test_stopped_or_recently_used_instances_are_not_idle() -> None:
    stopped = instance(state="Stopped", activity=NOW - timedelta(days=1))
    recent = instance(activity=NOW - timedelta(minutes=5), name="nb2")
    assert found(instances=(stopped, recent)) == []


def test_low_priority_nodes_are_priced_at_their_own_meter_and_unknown_sizes_have_no_price() -> None:
    low = idle_cluster(1, NOW - timedelta(hours=1), priority=Priority.LOW_PRIORITY)
    odd = idle_cluster(1, NOW - timedelta(hours=1), name="odd", vm_size="STANDARD_X1")
    by_name = {f.compute: f for f in found(low, odd)}
    # The snapshot has no low-priority prices, and none is guessed from the dedicated one.
    assert by_name["cpu"].hourly_cost is None and by_name["cpu"].price_note is None
    assert by_name["odd"].hourly_cost is None and by_name["odd"].cost_so_far is None
    fetched = NOW.date() - timedelta(days=2)
    BOOK.install([PriceQuote("Standard_DS3_v2", "eastus", True, 0.0586, "retail", fetched)])
    by_name = {f.compute: f for f in found(low, odd)}
    assert by_name["cpu"].hourly_cost == 0.0586
    assert by_name["cpu"].price_note == "Retail Prices, 2 days old, eastus"


def test_a_workspaces_region_prices_it_and_no_other_regions_price_stands_in() -> None:
    BOOK.clear()
    idle = idle_cluster(1, NOW - timedelta(hours=1))
    (finding,) = found(idle, region="West Europe")
    assert finding.hourly_cost is None  # the snapshot covers eastus only
    BOOK.install([PriceQuote("STANDARD_DS3_V2", "westeurope", False, 0.338, "retail", NOW.date())])
    (finding,) = found(idle, region="West Europe")
    assert finding.hourly_cost == 0.338
    assert finding.price_note == "Retail Prices, fetched today, westeurope"


def test_without_azures_last_busy_time_idleness_counts_from_when_it_was_first_seen() -> None:
    unknown = idle_cluster(1, since=None)
    inventory = ComputeInventory(clusters=[unknown])
    assert idle_without_known_start(inventory) == {"cpu"}
    assert found(unknown) == []
    (finding,) = found(unknown, seen_since={"cpu": NOW - timedelta(hours=1)})
    assert finding.idle_since == NOW - timedelta(hours=1)


def test_a_clusters_fingerprint_is_its_configuration_not_its_nodes() -> None:
    one = found(idle_cluster(1, NOW - timedelta(hours=1), min_nodes=1))[0]
    three = found(idle_cluster(3, NOW - timedelta(hours=1), min_nodes=1))[0]
    other_min = found(idle_cluster(2, NOW - timedelta(hours=1), min_nodes=2))[0]
    assert one.fingerprint == three.fingerprint != other_min.fingerprint


def test_a_finding_survives_its_json_form() -> None:
    (finding,) = found(instances=(instance(activity=NOW - timedelta(hours=3)),))
    assert IdleFinding.from_json(finding.as_json()) == finding


def test_a_long_idle_time_with_a_minimum_of_zero_offers_the_recommended_idle_time() -> None:
    (finding,) = found(cluster(idle_seconds_before_scale_down=3600))
    assert finding.idle_seconds_before_scale_down == 3600
    assert finding.idle_seconds_fix == POLICY.recommended_idle_seconds_before_scale_down
    assert finding.can_set_idle_time and not finding.can_set_min_zero
    assert finding.fix_label == "Set idle time to 2 min"


def test_a_minimum_above_zero_is_fixed_first_even_when_the_idle_time_is_long_too() -> None:
    (finding,) = found(cluster(min_nodes=1, idle_seconds_before_scale_down=3600))
    assert finding.can_set_min_zero and not finding.can_set_idle_time
    assert finding.fix_label == "Set minimum to 0"


def test_an_idle_time_within_policy_offers_no_idle_time_fix() -> None:
    (finding,) = found(idle_cluster(2, since=NOW - timedelta(hours=2)))
    assert finding.idle_seconds_fix is None and finding.fix_label is None


def test_the_idle_time_fix_follows_the_policys_recommended_value() -> None:
    policy = POLICY.model_copy(update={"recommended_idle_seconds_before_scale_down": 90})
    inventory = ComputeInventory(clusters=[cluster(idle_seconds_before_scale_down=3600)])
    (finding,) = find_idle(inventory, policy, NOW)
    assert finding.fix_label == "Set idle time to 90 s"


def test_a_finding_stored_before_the_idle_time_fix_still_loads_without_that_fix() -> None:
    (finding,) = found(cluster(idle_seconds_before_scale_down=3600))
    stored = finding.as_json()
    del stored["idle_seconds_before_scale_down"], stored["idle_seconds_fix"]

    loaded = IdleFinding.from_json(stored)

    assert loaded.idle_seconds_fix is None and not loaded.can_set_idle_time
    assert loaded.fix_label is None


def test_a_finding_with_the_idle_time_fix_survives_storage() -> None:
    (finding,) = found(cluster(idle_seconds_before_scale_down=3600))
    assert IdleFinding.from_json(finding.as_json()) == finding


# -- instances on Azure, which reports when an instance started but never its activity --


def azure_instance(
    started: datetime | None, shutdown: int | None = None, **fields: Any
) -> InstanceInfo:
    return instance(
        last_operation="Start" if started else None,
        last_operation_at=started,
        last_operation_status="Succeeded" if started else None,
        idle_shutdown_minutes=shutdown,
        **fields,
    )


def test_an_azure_instance_is_reported_by_how_long_it_runs_never_as_inactive() -> None:
    started = NOW - timedelta(hours=3)
    (finding,) = found(instances=(azure_instance(started),))
    assert finding.reasons == (
        "running for 3h (since Start at 2026-01-05 09:00 UTC)",
        "no idle shutdown is set",
        "no job the bot follows runs on it",
    )
    assert not any(
        "activity" in reason or "idle" in reason.split()[0] for reason in finding.reasons
    )
    assert finding.idle_since is None  # Azure did not say it idles
    assert (finding.hourly_cost, finding.cost_so_far) == (0.185, 0.56)  # 3 h since its start
    assert finding.fix_label == "Stop instance"
    assert finding.idle_shutdown_label == "Set idle shutdown to 30 min"


def test_an_azure_instance_with_a_short_idle_shutdown_is_left_to_azure() -> None:
    started = NOW - timedelta(hours=3)
    assert found(instances=(azure_instance(started, shutdown=30),)) == []
    (long,) = found(instances=(azure_instance(started, shutdown=240),))
    assert long.reasons[1] == "idle shutdown after 240 min (policy: at most 60 min)"
    assert long.idle_shutdown_fix == 30


def test_an_azure_instance_started_recently_or_with_a_job_says_so() -> None:
    assert found(instances=(azure_instance(NOW - timedelta(minutes=10)),)) == []
    (busy,) = found(
        instances=(azure_instance(NOW - timedelta(hours=1)),), jobs_on={"nb": ["train-1"]}
    )
    assert busy.reasons[-1] == "job the bot follows on it: `train-1`"


def test_an_azure_instance_whose_start_is_unknown_counts_from_when_it_was_first_seen() -> None:
    unknown = azure_instance(None)
    assert idle_without_known_start(ComputeInventory(instances=[unknown])) == {"nb"}
    (finding,) = found(instances=(unknown,), seen_since={"nb": NOW - timedelta(hours=2)})
    assert finding.reasons[0] == (
        "running for at least 2h (first seen running 2026-01-05 10:00 UTC)"
    )
    assert finding.idle_since is None
