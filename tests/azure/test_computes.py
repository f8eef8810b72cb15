"""Computes: the inventory in one list call, stopping instances, a cluster's minimum and
idle time."""

from __future__ import annotations

import pytest

from shared.errors import NotFoundError, WorkspaceError
from tests.azure.conftest import ALICE_OBJECT_ID
from tests.fakes.azure_arm import FakeAzure
from workspaces.azure.backend import AzureWorkspace
from workspaces.azure.computes import iso_duration_seconds
from workspaces.types import AzureCoordinates, Priority


def test_computes_are_listed_in_one_call_with_node_counts(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.add_cluster(coords, "cpu", priority="LowPriority", min_nodes=1, current_nodes=1)
    fake.add_other_compute(coords, "aks", "Kubernetes")

    inventory = backend.list_computes()

    assert len(fake.calls) == 1
    [call] = fake.calls
    assert (call.method, call.path) == ("GET", f"{coords.workspace_scope}/computes")
    gpu = inventory.cluster("gpu")
    assert gpu is not None
    assert (gpu.current_nodes, gpu.min_nodes, gpu.max_nodes) == (3, 0, 4)
    assert gpu.node_state_counts["running"] == 2
    assert gpu.node_state_counts["idle"] == 1
    assert gpu.allocation_state == "Steady"
    assert gpu.idle_seconds_before_scale_down == 200
    cpu = inventory.cluster("cpu")
    assert cpu is not None and cpu.priority is Priority.LOW_PRIORITY
    assert inventory.others == {"aks": "Kubernetes"}


def test_compute_instances_carry_state_user_and_idle_shutdown(backend: AzureWorkspace) -> None:
    [instance] = backend.list_computes().instances

    assert instance.name == "ci-alice"
    assert instance.state == "Running"
    assert instance.assigned_user == ALICE_OBJECT_ID
    assert instance.idle_shutdown_minutes == 30


def test_long_compute_lists_follow_next_link(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.page_size = 2
    for index in range(3):
        fake.add_cluster(coords, f"c{index}")

    inventory = backend.list_computes()

    assert len(inventory.clusters) == 4
    assert len(fake.calls_to("GET", "/computes$")) == 3  # pages, not computes


def test_stopping_an_instance_waits_for_the_operation(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    backend.stop_instance("ci-alice")

    assert len(fake.calls_to("POST", "/computes/ci-alice/stop$")) == 1
    assert len(fake.calls_to("GET", "computeOperationsStatus")) == 2  # in progress, then done
    assert fake.compute(coords, "ci-alice")["properties"]["properties"]["state"] == "Stopped"


def test_stopping_a_stopped_instance_changes_nothing(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.stop_instance("ci-alice")
    backend.stop_instance("ci-alice")

    assert len(fake.calls_to("POST", "/stop$")) == 1


def test_stopping_a_missing_instance_names_it(backend: AzureWorkspace) -> None:
    with pytest.raises(NotFoundError, match="no compute named ci-bob"):
        backend.stop_instance("ci-bob")


def test_setting_min_nodes_updates_only_the_scale_settings(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.compute(coords, "gpu")["properties"]["properties"]["scaleSettings"]["minNodeCount"] = 2

    backend.set_cluster_min_nodes("gpu", 0)

    [put] = fake.calls_to("PUT", "/computes/gpu$")
    assert put.body["properties"]["properties"]["scaleSettings"]["minNodeCount"] == 0
    settings = fake.compute(coords, "gpu")["properties"]["properties"]["scaleSettings"]
    assert settings == {
        "maxNodeCount": 4,
        "minNodeCount": 0,
        "nodeIdleTimeBeforeScaleDown": "PT3M20S",
    }


def test_min_nodes_above_the_maximum_is_refused(backend: AzureWorkspace) -> None:
    with pytest.raises(WorkspaceError, match="at most 4 nodes"):
        backend.set_cluster_min_nodes("gpu", 5)


def test_setting_the_idle_time_puts_it_as_an_iso_duration_and_later_lists_show_it(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    backend.set_cluster_idle_time("gpu", 120)

    [put] = fake.calls_to("PUT", "/computes/gpu$")
    scale = put.body["properties"]["properties"]["scaleSettings"]
    assert scale["nodeIdleTimeBeforeScaleDown"] == "PT2M"
    assert (scale["minNodeCount"], scale["maxNodeCount"]) == (0, 4)
    gpu = backend.list_computes().cluster("gpu")
    assert gpu is not None and gpu.idle_seconds_before_scale_down == 120


def test_setting_the_idle_time_it_already_has_changes_nothing(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.set_cluster_idle_time("gpu", 200)

    assert fake.calls_to("PUT", "/computes/gpu$") == []


@pytest.mark.parametrize(("seconds", "why"), [(-5, "cannot be negative"), (0, "0 s cannot be set")])
def test_an_idle_time_azure_ai_ml_cannot_send_is_refused_before_calling_azure(
    backend: AzureWorkspace, fake: FakeAzure, seconds: int, why: str
) -> None:
    with pytest.raises(WorkspaceError, match=why):
        backend.set_cluster_idle_time("gpu", seconds)
    assert fake.calls == []


def test_the_idle_time_of_a_compute_instance_is_refused(backend: AzureWorkspace) -> None:
    with pytest.raises(WorkspaceError, match="not a compute cluster"):
        backend.set_cluster_idle_time("ci-alice", 120)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT3M20S", 200), ("PT2M", 120), ("PT1H", 3600), ("P1DT1S", 86401), ("soon", None)],
)
def test_iso_durations_become_seconds(text: str, seconds: int | None) -> None:
    assert iso_duration_seconds(text) == seconds
