"""The Azure Retail Prices API: pay-as-you-go prices of VM sizes per region, no sign-in.

    GET https://prices.azure.com/api/retail/prices?$filter=serviceName eq 'Virtual Machines'
        and priceType eq 'Consumption' and armRegionName eq 'eastus'
        and (armSkuName eq 'Standard_DS3_v2' or ...)

answers `{"BillingCurrency", "Items": [...], "NextPageLink", "Count"}`, 100 items a page, the
next page at `NextPageLink` (null on the last). Each item is one meter: `armSkuName`,
`armRegionName`, `retailPrice` per `unitOfMeasure` ("1 Hour"), `productName` ("Virtual
Machines DSv2 Series" or "... Series Windows"), `meterName`/`skuName` ("DS3 v2", "DS3 v2
Spot", "DS3 v2 Low Priority"), `type` ("Consumption", "DevTestConsumption", "Reservation").
Compute in Azure ML runs Linux, so Windows meters are skipped; a low-priority node is priced
at the "Low Priority" meter, or the "Spot" meter where a size has no low-priority one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

from shared.errors import WorkspaceError
from workspaces.prices import PriceQuote, normalise_region, normalise_sku

RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
# SKUs asked for in one request: the filter goes in the URL, and it must stay short.
SKUS_PER_REQUEST = 15
MAX_PAGES = 50  # per request; a filtered answer has a handful


def price_filter(region: str, skus: Iterable[str]) -> str:
    names = " or ".join(f"armSkuName eq '{_quoted(sku)}'" for sku in skus)
    return (
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        f"and armRegionName eq '{_quoted(normalise_region(region))}' and ({names})"
    )


def _quoted(value: str) -> str:
    return value.replace("'", "''")


def fetch_vm_prices(
    region: str,
    skus: Iterable[str],
    *,
    url: str = RETAIL_PRICES_URL,
    today: date,
    connection_verify: bool | str = True,
    sleep: Callable[[float], None] = time.sleep,
) -> list[PriceQuote]:
    """Dedicated and low-priority Linux prices of `skus` in `region`, as of `today`.

    Raises `WorkspaceError` when the API cannot be reached or answers with an error; a SKU
    it does not price is simply absent from the result."""
    # One spelling per size: the API (called without api-version) ignores case.
    unique = {normalise_sku(sku): sku for sku in sorted(skus, reverse=True) if sku}
    wanted = sorted(unique.values(), key=normalise_sku)
    items: list[dict[str, Any]] = []
    client = _client(connection_verify, sleep)
    for start in range(0, len(wanted), SKUS_PER_REQUEST):
        chunk = wanted[start : start + SKUS_PER_REQUEST]
        items.extend(_pages(client, url, price_filter(region, chunk)))
    return quotes_from_items(items, region, today)


def _client(connection_verify: bool | str, sleep: Callable[[float], None]) -> Any:
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import HeadersPolicy, RedirectPolicy, UserAgentPolicy
    from azure.core.pipeline.transport import RequestsTransport

    from workspaces.azure.retry import BoundedRetryPolicy, RetrySettings

    retry = BoundedRetryPolicy(
        RetrySettings(retries=3, total_seconds=60.0, max_retry_after_seconds=30.0), sleep=sleep
    )
    return PipelineClient(
        "",
        policies=[HeadersPolicy(), UserAgentPolicy(sdk_moniker="amlbot"), RedirectPolicy(), retry],
        transport=RequestsTransport(
            connection_verify=connection_verify, connection_timeout=10.0, read_timeout=30.0
        ),
    )


def _pages(client: Any, url: str, filter_: str) -> Iterator[dict[str, Any]]:
    from azure.core.exceptions import AzureError
    from azure.core.rest import HttpRequest

    request = HttpRequest("GET", url, params={"$filter": filter_})
    for _ in range(MAX_PAGES):
        try:
            response = client.send_request(request)
        except AzureError as exc:
            raise WorkspaceError(
                f"The Azure Retail Prices API at {url} is unreachable: {exc}"
            ) from None
        if response.status_code != 200:
            raise WorkspaceError(
                f"The Azure Retail Prices API answered HTTP {response.status_code}: "
                f"{response.text()[:200]}"
            )
        page = response.json()
        yield from page.get("Items") or []
        next_link = page.get("NextPageLink")
        if not next_link:
            return
        request = HttpRequest("GET", str(next_link))
    raise WorkspaceError(f"The Azure Retail Prices API gave more than {MAX_PAGES} pages.")


def _is_linux_vm_hour(item: dict[str, Any]) -> bool:
    product = str(item.get("productName", ""))
    return (
        item.get("type") == "Consumption"
        and item.get("serviceName", "Virtual Machines") == "Virtual Machines"
        and product.startswith("Virtual Machines")
        and "windows" not in product.lower()
        and str(item.get("unitOfMeasure", "")).strip().lower() == "1 hour"
        and str(item.get("currencyCode", "USD")) == "USD"
        and bool(item.get("armSkuName"))
    )


def _tier(item: dict[str, Any]) -> str:
    names = f"{item.get('meterName', '')} {item.get('skuName', '')}".lower()
    if "low priority" in names:
        return "low_priority"
    if "spot" in names:
        return "spot"
    return "dedicated"


def quotes_from_items(items: list[dict[str, Any]], region: str, today: date) -> list[PriceQuote]:
    """One quote per (SKU, dedicated or low priority): the newest meter of each kind."""
    region = normalise_region(region)
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        if not _is_linux_vm_hour(item) or normalise_region(item.get("armRegionName")) != region:
            continue
        key = (normalise_sku(str(item["armSkuName"])), _tier(item))
        current = best.get(key)
        if current is None or _start(item) > _start(current):
            best[key] = item
    quotes = []
    for (sku, tier), item in best.items():
        if tier == "spot" and (sku, "low_priority") in best:
            continue  # Azure ML's low priority has its own meter here
        quotes.append(
            PriceQuote(
                sku=str(item["armSkuName"]),
                region=region,
                low_priority=tier != "dedicated",
                usd_per_hour=round(float(item["retailPrice"]), 6),
                origin="retail",
                as_of=today,
                meter=str(item.get("meterName", "")),
            )
        )
    return sorted(quotes, key=lambda q: (normalise_sku(q.sku), q.low_priority))


def _start(item: dict[str, Any]) -> datetime:
    raw = str(item.get("effectiveStartDate") or "")
    try:
        found = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def retail_fetch(
    url: str | None = None, connection_verify: bool | str = True
) -> Callable[[str, list[str], date], list[PriceQuote]]:
    """`approvals.prices.Fetch` over the real API (or one at `url`): what the daily refresh
    and `amlbot prices refresh` call."""

    def fetch(region: str, skus: list[str], today: date) -> list[PriceQuote]:
        return fetch_vm_prices(
            region,
            skus,
            url=url or RETAIL_PRICES_URL,
            today=today,
            connection_verify=connection_verify,
        )

    return fetch
