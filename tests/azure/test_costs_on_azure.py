"""Budgets and capacity against the fake Azure with the real SDKs: the workspace's actual
cost from the Cost Management query API, and a GPU card's quota from Azure ML usages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from approvals.config import AppConfig
from bot.wiring import Core
from shared.errors import WorkspaceError
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from tests.paths import RULES_CONFIG
from workspaces.azure import make_azure_workspace
from workspaces.azure.backend import AzureWorkspace
from workspaces.types import AzureCoordinates


def test_month_to_date_cost_is_a_cost_management_query_for_the_workspace(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.month_costs[coords.workspace_scope.lower()] = 321.456
    spend = backend.month_to_date_cost()
    assert (spend.amount, spend.currency) == (321.46, "USD")
    [call] = fake.calls_to("POST", "/providers/Microsoft.CostManagement/query")
    assert call.path == (
        f"/subscriptions/{coords.subscription_id}/resourceGroups/{coords.resource_group}"
        "/providers/Microsoft.CostManagement/query"
    )
    assert (call.body["type"], call.body["timeframe"]) == ("ActualCost", "MonthToDate")
    assert call.body["dataset"]["filter"]["dimensions"]["values"] == [
        coords.workspace_scope.lower()
    ]


def test_nothing_billed_yet_is_zero(backend: AzureWorkspace) -> None:
    assert backend.month_to_date_cost().amount == 0.0


def test_without_the_query_action_the_error_names_it(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    fake.denied.add("microsoft.costmanagement/query/action")
    with pytest.raises(WorkspaceError) as caught:
        backend.month_to_date_cost()
    assert "Microsoft.CostManagement/query/action" in caught.value.message


@pytest.fixture
def rules_on_azure(fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str) -> Core:
    raw = yaml.safe_load(RULES_CONFIG.read_text(encoding="utf-8"))
    demo = raw["workspaces"]["demo"]
    demo["backend"] = "azure"
    demo["budget"]["spend_from"] = "cost_management"
    raw["cloud"] = fake.cloud_config().model_dump()
    config = AppConfig.model_validate(raw)
    coords = config.workspaces["demo"].azure
    fake.add_workspace(
        coords.subscription_id, coords.resource_group, coords.workspace_name, location="westeurope"
    )
    fake.add_cluster(coords, "gpu-cluster", vm_size="Standard_NC6s_v3", max_nodes=2)
    fake.add_cluster(coords, "cpu-cluster", vm_size="Standard_DS3_v2", max_nodes=4)
    fake.month_costs[coords.workspace_scope.lower()] = 410.0
    fake.quota_limits["standardNCSv3Family"] = 6
    core = make_core(config, sqlite_url)
    backend = make_azure_workspace(
        config.workspaces["demo"].azure_settings(),
        config.cloud,
        FakeCredential(),
        **fake.backend_options(),
    )
    core.backends.install("demo", backend)
    return core


def test_the_budget_rule_uses_azures_actual_cost(rules_on_azure: Core) -> None:
    reply = rules_on_azure.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 2h --reason 'fine-tune'"
    )
    # $410 billed + $12.24 for this grant is 84% of $500: two leads.
    assert "policy rule `budget-nearly-spent`" in reply.text
    card = rules_on_azure.service.handle_text("bob", f"/aml request show {reply.request_id}")
    assert (
        "Spend: $410.00 of $500.00 this month (82%); this request adds up to $12.24 "
        "(spend from Azure Cost Management)" in card.text
    )


def test_the_gpu_card_warns_when_the_quota_cannot_hold_the_cluster(rules_on_azure: Core) -> None:
    reply = rules_on_azure.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 2h --reason 'fine-tune'"
    )
    card = rules_on_azure.service.handle_text("bob", f"/aml request show {reply.request_id}")
    assert (
        "Capacity: Standard NCSv3 Family Cores in westeurope: 0 of 6 cores used, room for 1 "
        "more node of 6 cores; cluster gpu-cluster: 2 of 2 nodes free. Warning: this "
        "needs 2 nodes and the quota has room for 1 more, so it may not start" in card.text
    )
