"""The Azure Cost Management query API in the fake, in its documented shape.

`POST /subscriptions/S/resourceGroups/RG/providers/Microsoft.CostManagement/query`
(action `Microsoft.CostManagement/query/action`) with a `QueryDefinition` body
(`type`, `timeframe`, `dataset.aggregation`, optional `dataset.filter.dimensions` on
`ResourceId`) answers a table: `properties.columns` (`[{"name", "type"}]`) and
`properties.rows`. Costs are seeded per workspace with `fake.month_costs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.azure_arm_state import ArmError, FakeResponse

if TYPE_CHECKING:
    from tests.fakes.azure_arm import FakeAzure, Request

QUERY = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.CostManagement/query"
)


def register(fake: FakeAzure) -> None:
    fake.route(
        "POST",
        QUERY,
        query,
        api_versions={"2023-11-01", "2024-08-01"},
        action="Microsoft.CostManagement/query/action",
    )


def _check(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ArmError(400, "BadRequest", "The query definition is missing.")
    if body.get("type") not in {"ActualCost", "AmortizedCost", "Usage"}:
        raise ArmError(400, "BadRequest", f"Invalid query type '{body.get('type')}'.")
    if body.get("timeframe") not in {"MonthToDate", "BillingMonthToDate", "Custom", "WeekToDate"}:
        raise ArmError(400, "BadRequest", f"Invalid timeframe '{body.get('timeframe')}'.")
    dataset = body.get("dataset")
    if not isinstance(dataset, dict) or not dataset.get("aggregation"):
        raise ArmError(400, "BadRequest", "dataset.aggregation is required.")
    return dataset


def query(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    dataset = _check(request.body)
    prefix = f"/subscriptions/{m['sub']}/resourcegroups/{m['rg']}/".lower()
    wanted: set[str] | None = None
    dimensions = (dataset.get("filter") or {}).get("dimensions") or {}
    if dimensions:
        if dimensions.get("name") != "ResourceId" or dimensions.get("operator") != "In":
            raise ArmError(400, "BadRequest", "The fake filters on ResourceId In only.")
        wanted = {str(value).lower() for value in dimensions.get("values") or []}
    with fake.lock:
        costs = {
            ws_id: amount
            for ws_id, amount in fake.month_costs.items()
            if ws_id.startswith(prefix) and (wanted is None or ws_id in wanted)
        }
    rows = [[round(sum(costs.values()), 6), "USD"]] if costs else []
    return FakeResponse(
        200,
        {
            "id": f"{prefix}providers/Microsoft.CostManagement/query/fake",
            "name": "fake",
            "type": "Microsoft.CostManagement/query",
            "properties": {
                "nextLink": None,
                "columns": [
                    {"name": "Cost", "type": "Number"},
                    {"name": "Currency", "type": "String"},
                ],
                "rows": rows,
            },
        },
    )
