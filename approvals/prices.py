"""Prices from the Azure Retail Prices API, cached in the database with the day fetched.

- `refresh_prices`: fetch the sizes the configuration names (and any a message asked for and
  did not find) in every configured workspace's region, store them, use them. Daily from the
  scheduler (`price_refresh_chore`; one replica claims each day), and `amlbot prices refresh`.
- `load_cached_prices`: what the database holds, into this process's `BOOK` (at start and
  hourly, so every replica uses what another fetched).
A region the API cannot be reached for keeps its older prices, or the shipped snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select

from approvals.claims import claim_due
from approvals.core import Basics
from approvals.sweep_tables import PriceRow
from shared.errors import WorkspaceError
from shared.wording import counted
from workspaces.prices import BOOK, PriceQuote, normalise_region, normalise_sku

log = logging.getLogger(__name__)

REFRESH_EVERY = timedelta(days=1)
CHORE_EVERY = timedelta(hours=1)  # look whether the day's refresh is due; reload the cache
# (region, SKUs, today) -> quotes; `workspaces.azure.retail_prices.fetch_vm_prices` bound to
# a URL, or a test's fake.
Fetch = Callable[[str, list[str], date], list[PriceQuote]]


@dataclass
class RefreshReport:
    fetched: dict[str, int] = field(default_factory=dict)  # region -> prices stored
    failed: dict[str, str] = field(default_factory=dict)  # region -> why

    def summary(self) -> str:
        lines = [
            f"{region}: {counted(count, 'price')} stored" for region, count in self.fetched.items()
        ]
        lines += [f"{region}: not refreshed ({why})" for region, why in self.failed.items()]
        return "\n".join(lines) or "no region to refresh (no workspace is configured)"


def wanted_skus(core: Basics) -> dict[str, set[str]]:
    """Region -> the sizes to price there: configured clusters and instances, the snapshot's,
    and those a message asked for and found no price for."""
    wanted: dict[str, set[str]] = {}
    for ws in core.config.workspaces.values():
        skus = wanted.setdefault(normalise_region(ws.region), set())
        skus.update(cluster.vm_sku for cluster in ws.clusters)
        skus.update(instance.vm_sku for instance in ws.instances)
    snapshot_skus = {quote.sku for quote in BOOK.snapshot.quotes.values()}
    for skus in wanted.values():
        skus.update(snapshot_skus)
    for region, sku in BOOK.missed():
        if region in wanted:
            wanted[region].add(sku)
    return wanted


def refresh_prices(core: Basics, fetch: Fetch, now: datetime | None = None) -> RefreshReport:
    now = now or core.clock.now()
    report = RefreshReport()
    for region, skus in sorted(wanted_skus(core).items()):
        try:
            quotes = fetch(region, sorted(skus, key=normalise_sku), now.date())
        except WorkspaceError as exc:
            log.warning("prices for %s not refreshed; older ones stay: %s", region, exc.message)
            report.failed[region] = exc.message
            continue
        store_quotes(core, quotes, now)
        BOOK.install(quotes)
        report.fetched[region] = len(quotes)
    return report


def store_quotes(core: Basics, quotes: list[PriceQuote], now: datetime) -> None:
    with core.store.transaction() as session:
        for quote in quotes:
            key = (quote.region, normalise_sku(quote.sku), quote.low_priority)
            session.execute(
                delete(PriceRow).where(
                    PriceRow.region == key[0],
                    PriceRow.sku == key[1],
                    PriceRow.low_priority == key[2],
                )
            )
            session.add(
                PriceRow(
                    region=key[0],
                    sku=key[1],
                    low_priority=key[2],
                    usd_per_hour=quote.usd_per_hour,
                    meter=quote.meter[:255],
                    fetched_at=now,
                )
            )


def load_cached_prices(core: Basics) -> int:
    """Install what the database holds into this process's price book."""
    with core.store.transaction() as session:
        rows = list(session.scalars(select(PriceRow)))
    quotes = [
        PriceQuote(
            sku=row.sku,
            region=row.region,
            low_priority=row.low_priority,
            usd_per_hour=row.usd_per_hour,
            origin="retail",
            as_of=row.fetched_at.date(),
            meter=row.meter,
        )
        for row in rows
    ]
    return BOOK.install(quotes)


def refresh_if_due(core: Basics, fetch: Fetch, holder: str) -> RefreshReport | None:
    """The scheduler's chore: refresh once a day (one replica claims it), and load what any
    replica fetched."""
    now = core.clock.now()
    with core.store.transaction() as session:
        due = claim_due(session, "prices", now, REFRESH_EVERY, holder)
    report = refresh_prices(core, fetch, now) if due else None
    load_cached_prices(core)
    return report
