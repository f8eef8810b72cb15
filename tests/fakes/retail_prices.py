"""A fake Azure Retail Prices API (https://prices.azure.com/api/retail/prices) over HTTP.

Answers as the real one does (its documented response: `BillingCurrency`,
`CustomerEntityId`, `CustomerEntityType`, `Items`, `NextPageLink`, `Count`), evaluating the
`$filter` expressions the bot sends (`field eq 'value'` joined by `and`, and a parenthesised
`or` group), paging `page_size` items at a time with `$skip` in `NextPageLink`. Items are
built with `meter(...)` in the real item shape; the examples in `VM_METERS` are the meters
the API lists for a size: Linux and Windows, dedicated, Spot and Low Priority,
DevTestConsumption and Reservation.

    with FakeRetailPrices(page_size=2) as prices:
        prices.items = meters_for("eastus", "Standard_DS3_v2", "DS3 v2", 0.229, ...)
        fetch_vm_prices("eastus", ["Standard_DS3_v2"], url=prices.url, today=...)
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes.serving import ServesWhileOpen

_CLAUSE = re.compile(r"(\w+)\s+eq\s+'((?:[^']|'')*)'")


def meter(
    region: str,
    arm_sku: str,
    meter_name: str,
    price: float,
    *,
    product: str = "Virtual Machines DSv2 Series",
    kind: str = "Consumption",
    sku_name: str | None = None,
    start: str = "2024-03-01T00:00:00Z",
) -> dict[str, Any]:
    """One item as the API lists it (the documented example's fields)."""
    return {
        "currencyCode": "USD",
        "tierMinimumUnits": 0.0,
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": region,
        "location": {"eastus": "US East", "westeurope": "EU West"}.get(region, region),
        "effectiveStartDate": start,
        "meterId": f"{abs(hash((region, arm_sku, meter_name, product, kind))):032x}"[:36],
        "meterName": meter_name,
        "productId": "DZH318Z0BQ4L",
        "skuId": "DZH318Z0BQ4L/00G4",
        "productName": product,
        "skuName": sku_name or meter_name,
        "serviceName": "Virtual Machines",
        "serviceId": "DZH313Z7MMC8",
        "serviceFamily": "Compute",
        "unitOfMeasure": "1 Hour",
        "type": kind,
        "isPrimaryMeterRegion": True,
        "armSkuName": arm_sku,
    }


def meters_for(
    region: str,
    arm_sku: str,
    name: str,
    dedicated: float,
    *,
    spot: float | None = None,
    low_priority: float | None = None,
    windows: float | None = None,
    product: str = "Virtual Machines DSv2 Series",
) -> list[dict[str, Any]]:
    """Every meter the API lists for one size in one region."""
    items = [meter(region, arm_sku, name, dedicated, product=product)]
    items.append(
        meter(
            region,
            arm_sku,
            name,
            round(dedicated * 0.7, 4),
            product=product,
            kind="DevTestConsumption",
        )
    )
    if windows is not None:
        items.append(meter(region, arm_sku, name, windows, product=f"{product} Windows"))
    if spot is not None:
        items.append(meter(region, arm_sku, f"{name} Spot", spot, product=product))
    if low_priority is not None:
        items.append(meter(region, arm_sku, f"{name} Low Priority", low_priority, product=product))
    return items


class FakeRetailPrices(ServesWhileOpen):
    def __init__(self, *, page_size: int = 100) -> None:
        self.page_size = page_size
        self.items: list[dict[str, Any]] = []
        self.requests: list[dict[str, str]] = []  # the query of every request
        self.fail_next: list[int] = []  # statuses to answer the next requests with
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> FakeRetailPrices:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/retail/prices"

    def answer(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(query)
            if self.fail_next:
                status = self.fail_next.pop(0)
                return status, {"Error": {"Code": "TooManyRequests", "Message": "Slow down."}}
            matching = [item for item in self.items if _matches(item, query.get("$filter", ""))]
        skip = int(query.get("$skip", "0"))
        page = matching[skip : skip + self.page_size]
        next_link = None
        if skip + self.page_size < len(matching):
            following = {**query, "$skip": str(skip + self.page_size)}
            next_link = f"{self.url}?{urlencode(following)}"
        return 200, {
            "BillingCurrency": "USD",
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": page,
            "NextPageLink": next_link,
            "Count": len(page),
        }


_FIELDS = {"priceType": "type"}  # the filter's name for a field the item spells differently


def _matches(item: dict[str, Any], filter_: str) -> bool:
    """`a eq 'x' and b eq 'y' and (c eq 'p' or c eq 'q')`. Without an api-version the API
    compares values case-insensitively (2023-01-01-preview and later: case-sensitively)."""
    groups = re.split(
        r"\s+and\s+", re.sub(r"\(([^)]*)\)", lambda m: m.group(0).replace(" and ", " & "), filter_)
    )
    for group in groups:
        alternatives = _CLAUSE.findall(group)
        if not alternatives:
            continue
        if not any(
            str(item.get(_FIELDS.get(field, field), "")).lower() == value.replace("''", "'").lower()
            for field, value in alternatives
        ):
            return False
    return True


def _handler(fake: FakeRetailPrices) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, body = fake.answer(dict(parse_qsl(parts.query, keep_blank_values=True)))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
