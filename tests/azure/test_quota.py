"""A VM size's quota through azure-ai-ml's `list_sizes()` and `list_usage()`, against the
fake's `vmSizes` and `usages` in their documented shapes, with the shipped role."""

from __future__ import annotations

from approvals.capacity import capacity_line, free_nodes
from shared.errors import WorkspaceError
from tests.fakes.azure_arm import FakeAzure
from workspaces.azure.backend import AzureWorkspace


def test_quota_of_a_gpu_size_counts_the_familys_cores(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    quota = backend.vm_quota("STANDARD_NC6s_v3")
    assert quota is not None
    # The fixture's cluster `gpu` has 3 Standard_NC6s_v3 nodes of 6 cores each.
    assert (quota.family, quota.cores_per_node, quota.used_cores, quota.limit_cores) == (
        "standardNCSv3Family",
        6,
        18,
        24,
    )
    assert quota.location == "eastus"
    assert quota.nodes_that_fit == 1
    assert [c.method for c in fake.calls_to("GET", "/locations/eastus/(vmSizes|usages)")] == [
        "GET",
        "GET",
    ]


def test_a_size_the_region_does_not_offer_has_no_quota(backend: AzureWorkspace) -> None:
    assert backend.vm_quota("Standard_ND96asr_v4") is None


def test_the_card_line_warns_when_the_quota_is_too_small(backend: AzureWorkspace) -> None:
    quota = backend.vm_quota("Standard_NC6s_v3")
    (cluster,) = [c for c in backend.list_computes().clusters if c.name == "gpu"]
    assert free_nodes(cluster) == 2  # 4 at most, 2 running, 1 idle counts as free
    line = capacity_line(quota, cluster, nodes_wanted=4)
    assert line.startswith(
        "Standard NCSv3 Family Cores in eastus: 18 of 24 cores used, room for 1 more node "
        "of 6 cores; cluster gpu: 2 of 4 nodes free"
    )
    assert "this needs 4 nodes and the quota has room for 1 more, so it may not start" in line


def test_without_the_usages_action_the_error_names_it(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    fake.denied.add("microsoft.machinelearningservices/locations/usages/read")
    try:
        backend.vm_quota("Standard_NC6s_v3")
    except WorkspaceError as error:
        assert "Microsoft.MachineLearningServices/locations/usages/read" in error.message
    else:
        raise AssertionError("the quota was read without its permission")
