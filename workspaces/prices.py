"""Hourly prices of Azure VM sizes, for cost hints on cards, alerts and the idle digest.

Where a price comes from, best first (every quote says which, and how old it is):
1. the Azure Retail Prices API (pay-as-you-go, Linux, USD), fetched daily by the bot and
   kept in its database (`approvals/prices.py`), which installs them here with `BOOK`;
2. the snapshot shipped in this package (`prices_snapshot.json`): its date and the regions
   it covers are in the file; it answers when the API was never reached.
A size or region neither knows has no price ("unknown"): nothing is guessed, and a region's
price never stands in for another's. Real bills differ by agreement and currency: these are
estimates to compare options, never invoices.

    quote = price_for("Standard_NC6s_v3", "westeurope", low_priority=True)
    quote.usd_per_hour, quote.provenance()   # 0.612, "Retail Prices, 2 days old"
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

# The region a workspace without a configured `region` is priced in (and said to be).
DEFAULT_REGION = "eastus"
# What prices are, in one phrase (kept for callers that name the kind of price only).
PRICE_SOURCE = "Azure Retail Prices, pay-as-you-go Linux, USD (estimates)"
SNAPSHOT_RESOURCE = "prices_snapshot.json"

PriceOrigin = Literal["retail", "snapshot"]
Key = tuple[str, str, bool]  # (region, SKU, low priority), both names normalised


def normalise_region(region: str | None) -> str:
    """ARM's region name: "West Europe" and "westeurope" are the same place."""
    if not region:
        return DEFAULT_REGION
    return "".join(region.split()).lower()


def normalise_sku(sku: str) -> str:
    return sku.strip().lower()


@dataclass(frozen=True)
class PriceQuote:
    """An hourly price of one node of `sku` in `region`, and where it came from."""

    sku: str
    region: str
    low_priority: bool
    usd_per_hour: float
    origin: PriceOrigin
    as_of: date  # the day it was fetched (retail) or the snapshot's date
    meter: str = ""  # the Retail Prices meter it was read from, e.g. "NC6s v3 Low Priority"

    def provenance(self, today: date | None = None) -> str:
        """Where the price came from and how old it is, for the end of a message."""
        if self.origin == "snapshot":
            return f"snapshot of {self.as_of.isoformat()}, {self.region}"
        age = ((today or datetime.now(UTC).date()) - self.as_of).days
        words = "fetched today" if age <= 0 else "1 day old" if age == 1 else f"{age} days old"
        return f"Retail Prices, {words}, {self.region}"


@dataclass(frozen=True)
class Snapshot:
    as_of: date
    regions: tuple[str, ...]
    note: str
    quotes: dict[Key, PriceQuote]


def _key(sku: str, region: str | None, low_priority: bool) -> Key:
    return normalise_region(region), normalise_sku(sku), low_priority


def parse_snapshot(data: dict[str, Any]) -> Snapshot:
    """The snapshot file's content: {"as_of", "regions", "note", "prices": [{"region",
    "sku", "low_priority", "usd_per_hour", "meter"}]}."""
    as_of = date.fromisoformat(str(data["as_of"]))
    quotes: dict[Key, PriceQuote] = {}
    for entry in data["prices"]:
        quote = PriceQuote(
            sku=str(entry["sku"]),
            region=normalise_region(str(entry["region"])),
            low_priority=bool(entry.get("low_priority", False)),
            usd_per_hour=float(entry["usd_per_hour"]),
            origin="snapshot",
            as_of=as_of,
            meter=str(entry.get("meter", "")),
        )
        quotes[_key(quote.sku, quote.region, quote.low_priority)] = quote
    regions = tuple(normalise_region(r) for r in data.get("regions", []))
    return Snapshot(as_of=as_of, regions=regions, note=str(data.get("note", "")), quotes=quotes)


def snapshot_document(quotes: Iterable[PriceQuote], as_of: date, note: str) -> dict[str, Any]:
    """A snapshot file's content from fetched quotes (`amlbot prices refresh --snapshot`)."""
    listed = sorted(quotes, key=lambda q: (q.region, normalise_sku(q.sku), q.low_priority))
    return {
        "as_of": as_of.isoformat(),
        "regions": sorted({q.region for q in listed}),
        "note": note,
        "prices": [
            {
                "region": q.region,
                "sku": q.sku,
                "low_priority": q.low_priority,
                "usd_per_hour": q.usd_per_hour,
                "meter": q.meter,
            }
            for q in listed
        ],
    }


def load_snapshot(path: str) -> Snapshot:
    """A snapshot file, e.g. one `amlbot prices refresh --snapshot FILE` wrote."""
    from pathlib import Path

    try:
        return parse_snapshot(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"AMLBOT_PRICE_SNAPSHOT {path!r} is not a price snapshot ({exc}); write one with "
            "`amlbot prices refresh --snapshot FILE`"
        ) from exc


@cache
def shipped_snapshot() -> Snapshot:
    text = resources.files("workspaces").joinpath(SNAPSHOT_RESOURCE).read_text(encoding="utf-8")
    return parse_snapshot(json.loads(text))


class PriceBook:
    """Fetched prices over the shipped snapshot. Thread-safe; one per process (`BOOK`)."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._snapshot = snapshot
        self._retail: dict[Key, PriceQuote] = {}
        self._missed: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot or shipped_snapshot()

    def install(self, quotes: Iterable[PriceQuote]) -> int:
        """Use these fetched prices from now on (a newer quote for a key replaces the older)."""
        installed = 0
        with self._lock:
            for quote in quotes:
                key = _key(quote.sku, quote.region, quote.low_priority)
                current = self._retail.get(key)
                if current is None or current.as_of <= quote.as_of:
                    self._retail[key] = quote
                    installed += 1
                self._missed = {m for m in self._missed if _key(m[1], m[0], False)[:2] != key[:2]}
        return installed

    def use_snapshot(self, snapshot: Snapshot) -> None:
        """Fall back on this snapshot instead of the shipped one."""
        with self._lock:
            self._snapshot = snapshot

    def retail_quotes(self) -> dict[Key, PriceQuote]:
        with self._lock:
            return dict(self._retail)

    def clear(self) -> None:
        with self._lock:
            self._retail.clear()
            self._missed.clear()

    def quote(self, sku: str, region: str | None, low_priority: bool = False) -> PriceQuote | None:
        key = _key(sku, region, low_priority)
        with self._lock:
            found = self._retail.get(key)
            if found is None:
                found = self.snapshot.quotes.get(key)
            if found is None:
                self._missed.add((key[0], sku.strip()))
        return found

    def missed(self) -> set[tuple[str, str]]:
        """(region, SKU) pairs asked for and not known: the next refresh asks for them too."""
        with self._lock:
            return set(self._missed)


BOOK = PriceBook()


def price_for(
    sku: str, region: str | None = None, *, low_priority: bool = False
) -> PriceQuote | None:
    """The hourly price of one node of `sku` in `region` (ARM name or display name; None:
    `DEFAULT_REGION`), dedicated or low priority, with its provenance; None if unknown."""
    return BOOK.quote(sku, region, low_priority)


def hourly_price(
    vm_size: str, *, low_priority: bool = False, region: str | None = None
) -> float | None:
    """USD per node-hour, or None for a size (or region) no price is known for."""
    quote = price_for(vm_size, region, low_priority=low_priority)
    return None if quote is None else quote.usd_per_hour


def price_note(quotes: Iterable[PriceQuote | None], today: date | None = None) -> str:
    """ "Prices: Retail Prices, 2 days old, eastus." for the quotes a message used."""
    notes = sorted({q.provenance(today) for q in quotes if q is not None})
    if not notes:
        return "Prices: unknown for these sizes."
    return f"Prices: {'; '.join(notes)} (estimates)."


def format_price(amount: float | None) -> str:
    return "unknown" if amount is None else f"${amount:,.2f}"


def estimate(amount: float | None, per: str) -> str:
    """ "~$0.29/node-hour" (`per`: "node-hour", "hour"), or "price unknown": a tilde before
    "unknown" would read as a rough guess of a price."""
    return "price unknown" if amount is None else f"~{format_price(amount)}/{per}"
