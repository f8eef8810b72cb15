"""`amlbot prices refresh`: fetch VM prices now, cache them, optionally write a snapshot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from approvals.config import AppConfig
from bot.settings import Settings


def refresh_prices_command(settings: Settings, config: AppConfig, snapshot: str | None) -> int:
    from approvals.prices import refresh_prices
    from bot.wiring import build_core
    from workspaces.azure.retail_prices import retail_fetch
    from workspaces.prices import BOOK, snapshot_document

    if settings.prices_url is None:
        print("AMLBOT_RETAIL_PRICES_URL is off: nothing to refresh from.", file=sys.stderr)
        return 2
    core = build_core(config, database_url=settings.database_url)
    now = core.clock.now()
    report = refresh_prices(core, retail_fetch(settings.prices_url), now)
    print(report.summary())
    if snapshot is not None and report.fetched:
        quotes = [
            quote
            for region in report.fetched
            for (quote_region, _, _), quote in BOOK.retail_quotes().items()
            if quote_region == region
        ]
        document = snapshot_document(
            quotes,
            now.date(),
            note=(
                "Pay-as-you-go Linux prices (USD per node-hour) from the Azure Retail Prices API, "
                "written by `amlbot prices refresh --snapshot`."
            ),
        )
        Path(snapshot).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"snapshot of {now.date().isoformat()} written to {snapshot}")
    return 1 if report.failed else 0
