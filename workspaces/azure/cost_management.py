"""The workspace's actual cost this month, from the Azure Cost Management query API.

`POST {resource group}/providers/Microsoft.CostManagement/query` (action
`Microsoft.CostManagement/query/action`, at the resource group's scope) for `ActualCost`
over `MonthToDate`, summed and filtered to the workspace's resource id (Azure ML bills its
compute to the workspace). The answer is a table: `properties.columns` names the columns
(`Cost`, `Currency`), `properties.rows` holds the values.
"""

from __future__ import annotations

from typing import Any

from shared.errors import WorkspaceError
from workspaces.azure.clients import WorkspaceClients
from workspaces.azure.errors import translated
from workspaces.types import SpendToDate

COST_MANAGEMENT_API_VERSION = "2023-11-01"


def query_body(workspace_id: str) -> dict[str, Any]:
    return {
        "type": "ActualCost",
        "timeframe": "MonthToDate",
        "dataset": {
            "granularity": "None",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "filter": {
                "dimensions": {"name": "ResourceId", "operator": "In", "values": [workspace_id]}
            },
        },
    }


def month_to_date_cost(clients: WorkspaceClients) -> SpendToDate:
    coords = clients.coordinates
    scope = f"/subscriptions/{coords.subscription_id}/resourceGroups/{coords.resource_group}"
    with translated(f"asking Azure Cost Management what workspace {coords.workspace_name} cost"):
        answer = clients.arm().request(
            "POST",
            f"{scope}/providers/Microsoft.CostManagement/query",
            params={"api-version": COST_MANAGEMENT_API_VERSION},
            json=query_body(coords.workspace_scope.lower()),
        )
    return parse_query_result(answer)


def parse_query_result(answer: Any) -> SpendToDate:
    """The sum of the `Cost` column (no row: nothing spent yet) in the `Currency` given."""
    properties = (answer or {}).get("properties") or {}
    names = [str(column.get("name", "")).lower() for column in properties.get("columns") or []]
    if "cost" not in names:
        raise WorkspaceError("Azure Cost Management answered without a Cost column.")
    cost_at = names.index("cost")
    currency_at = names.index("currency") if "currency" in names else None
    total = 0.0
    currency = "USD"
    for row in properties.get("rows") or []:
        total += float(row[cost_at] or 0)
        if currency_at is not None and row[currency_at]:
            currency = str(row[currency_at])
    return SpendToDate(amount=round(total, 2), currency=currency)
