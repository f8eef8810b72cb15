"""Prices come from the Azure Retail Prices API (a fake speaking its documented shape, paged
by `NextPageLink`), are cached in the database with the day fetched, refreshed once a day by
one replica and on `amlbot prices refresh`, and fall back to the shipped snapshot; every
price says where it came from and how old it is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from approvals.config import DEMO_CONFIG_PATH, AppConfig
from approvals.prices import load_cached_prices, refresh_if_due, refresh_prices
from approvals.sweep_tables import PriceRow
from bot.cli import main
from bot.wiring import Core, build_core
from shared.errors import WorkspaceError
from tests.fakes.retail_prices import FakeRetailPrices, meter, meters_for
from workspaces.azure.retail_prices import fetch_vm_prices, price_filter, retail_fetch
from workspaces.clock import ManualClock
from workspaces.prices import BOOK, parse_snapshot, price_for, shipped_snapshot

TODAY = date(2026, 1, 5)


def catalogue() -> list[dict[str, object]]:
    """What the API lists for the demo's sizes: Linux and Windows, Spot, Low Priority,
    dev/test, in two regions."""
    items: list[dict[str, object]] = []
    items += meters_for(
        "westeurope",
        "Standard_DS3_v2",
        "DS3 v2",
        0.338,
        spot=0.0338,
        low_priority=0.0676,
        windows=0.526,
    )
    items += meters_for("westeurope", "Standard_DS11_v2", "DS11 v2", 0.21, windows=0.38)
    items += meters_for(
        "westeurope",
        "Standard_NC6s_v3",
        "NC6s v3",
        3.367,
        spot=0.6734,
        product="Virtual Machines NCSv3 Series",
    )
    items += meters_for("eastus", "Standard_DS3_v2", "DS3 v2", 0.293, low_priority=0.0586)
    items.append(meter("westeurope", "Standard_DS3_v2", "DS3 v2", 9.99, kind="Reservation"))
    # An older dedicated meter of the same size: the newest one wins.
    items.append(
        meter("westeurope", "Standard_DS3_v2", "DS3 v2", 0.3, start="2019-01-01T00:00:00Z")
    )
    return items


@pytest.fixture
def prices() -> Iterator[FakeRetailPrices]:
    with FakeRetailPrices(page_size=3) as fake:
        fake.items = catalogue()
        yield fake


def test_fetching_follows_every_page_and_keeps_linux_consumption_meters(
    prices: FakeRetailPrices,
) -> None:
    quotes = fetch_vm_prices(
        "West Europe",
        ["Standard_DS3_v2", "Standard_DS11_v2", "Standard_NC6s_v3", "Standard_X1"],
        url=prices.url,
        today=TODAY,
    )
    by_key = {(q.sku, q.low_priority): q for q in quotes}
    assert {k: q.usd_per_hour for k, q in by_key.items()} == {
        ("Standard_DS3_v2", False): 0.338,  # not Windows, dev/test, reservation or the old meter
        ("Standard_DS3_v2", True): 0.0676,  # its Low Priority meter, not Spot
        ("Standard_DS11_v2", False): 0.21,
        ("Standard_NC6s_v3", False): 3.367,
        ("Standard_NC6s_v3", True): 0.6734,  # no Low Priority meter: Spot
    }
    assert by_key[("Standard_DS3_v2", True)].meter == "DS3 v2 Low Priority"
    assert all(q.region == "westeurope" and q.as_of == TODAY for q in quotes)
    # 4 SKUs' westeurope consumption meters (9 items) 3 to a page: 3 pages, the later ones
    # at NextPageLink.
    assert [r.get("$skip") for r in prices.requests] == [None, "3", "6"]
    assert prices.requests[0]["$filter"] == price_filter(
        "westeurope",
        ["Standard_DS11_v2", "Standard_DS3_v2", "Standard_NC6s_v3", "Standard_X1"],
    )
    assert "priceType eq 'Consumption'" in prices.requests[0]["$filter"]


def test_a_throttled_fetch_is_retried_and_an_unreachable_api_is_a_clear_error(
    prices: FakeRetailPrices,
) -> None:
    prices.fail_next = [429]
    slept: list[float] = []
    quotes = fetch_vm_prices(
        "eastus", ["Standard_DS3_v2"], url=prices.url, today=TODAY, sleep=slept.append
    )
    assert len(quotes) == 2 and slept == [1.0]  # as long as Retry-After asked
    prices.fail_next = [500] * 10
    with pytest.raises(WorkspaceError, match="Retail Prices API answered HTTP 500"):
        fetch_vm_prices(
            "eastus", ["Standard_DS3_v2"], url=prices.url, today=TODAY, sleep=slept.append
        )


def test_without_fetched_prices_the_snapshot_answers_with_its_date_and_region_only() -> None:
    BOOK.clear()
    snapshot = shipped_snapshot()
    assert snapshot.regions == ("eastus",) and snapshot.as_of == date(2024, 1, 1)
    quote = price_for("standard_ds3_v2", "East US")
    assert quote is not None and quote.usd_per_hour == 0.293
    assert quote.provenance(TODAY) == "snapshot of 2024-01-01, eastus"
    assert price_for("Standard_DS3_v2", "westeurope") is None  # no other region stands in
    assert price_for("Standard_DS3_v2", "eastus", low_priority=True) is None  # nor a guess
    assert ("westeurope", "Standard_DS3_v2") in BOOK.missed()


def test_refreshed_prices_are_cached_with_their_day_and_every_replica_uses_them(
    prices: FakeRetailPrices,
    core: Core,
    clock: ManualClock,
    demo_config: AppConfig,
    database_url: str,
) -> None:
    report = refresh_prices(core, retail_fetch(prices.url))
    assert report.failed == {} and report.fetched["westeurope"] == 5
    quote = price_for("Standard_DS3_v2", "westeurope", low_priority=True)
    assert quote is not None and quote.usd_per_hour == 0.0676
    assert quote.provenance(clock.now().date()) == "Retail Prices, fetched today, westeurope"
    with core.store.transaction() as session:
        rows = session.scalars(select(PriceRow).order_by(PriceRow.sku)).all()
    assert {(r.sku, r.low_priority) for r in rows} >= {("standard_ds3_v2", True)}
    assert {r.fetched_at for r in rows} == {clock.now()}

    BOOK.clear()  # another process: it reads the database at start
    other = build_core(demo_config, database_url=database_url, clock=clock)
    try:
        assert price_for("Standard_DS3_v2", "westeurope") is not None
    finally:
        other.store.engine.dispose()
    clock.advance(timedelta(days=2))
    quote = price_for("Standard_DS3_v2", "westeurope")
    assert quote is not None
    assert quote.provenance(clock.now().date()) == "Retail Prices, 2 days old, westeurope"


def test_the_daily_refresh_runs_once_a_day_across_replicas_and_an_outage_keeps_old_prices(
    prices: FakeRetailPrices, core: Core, clock: ManualClock
) -> None:
    fetch = retail_fetch(prices.url)
    assert refresh_if_due(core, fetch, "replica-a") is not None
    assert refresh_if_due(core, fetch, "replica-b") is None  # claimed for today
    asked = len(prices.requests)
    clock.advance(timedelta(days=1))
    prices.fail_next = [500] * 20
    report = refresh_if_due(core, fetch, "replica-b")
    assert report is not None and "westeurope" in report.failed
    assert len(prices.requests) > asked
    quote = price_for("Standard_DS3_v2", "westeurope")
    assert quote is not None and quote.provenance(clock.now().date()) == (
        "Retail Prices, 1 day old, westeurope"
    )


def test_a_size_a_message_missed_is_asked_for_at_the_next_refresh(
    prices: FakeRetailPrices, core: Core
) -> None:
    prices.items.append(meter("westeurope", "Standard_E8s_v5", "E8s v5", 0.6))
    assert price_for("Standard_E8s_v5", "westeurope") is None
    refresh_prices(core, retail_fetch(prices.url))
    quote = price_for("Standard_E8s_v5", "westeurope")
    assert quote is not None and quote.usd_per_hour == 0.6
    assert load_cached_prices(core) >= 1


def test_amlbot_prices_refresh_caches_and_writes_a_snapshot(
    prices: FakeRetailPrices,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    BOOK.clear()
    # The demo in a region the fake Retail Prices API has prices for.
    config = tmp_path / "westeurope.yml"
    config.write_text(
        DEMO_CONFIG_PATH.read_text(encoding="utf-8").replace(
            "region: eastus", "region: westeurope"
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("AMLBOT_CONFIG", str(config))
    monkeypatch.setenv("AMLBOT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("AMLBOT_RETAIL_PRICES_URL", prices.url)
    target = tmp_path / "snapshot.json"
    assert main(["prices", "refresh", "--snapshot", str(target)]) == 0
    out = capsys.readouterr().out
    assert "westeurope: 5 prices stored" in out
    snapshot = parse_snapshot(json.loads(target.read_text()))
    assert snapshot.regions == ("westeurope",)
    assert len(snapshot.quotes) == 5

    monkeypatch.setenv("AMLBOT_RETAIL_PRICES_URL", "http://127.0.0.1:9/none")
    assert main(["prices", "refresh"]) == 1
    assert "westeurope: not refreshed (The Azure Retail Prices API" in capsys.readouterr().out
