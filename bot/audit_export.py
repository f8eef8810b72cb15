"""`amlbot audit export`: the whole trail as JSON lines or CSV."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from approvals import audit
from approvals.store import Store
from bot.settings import Settings
from commands.durations import parse_duration


def export_audit(
    settings: Settings, fmt: str, since: str | None, workspace: str | None, output: str | None
) -> int:
    try:
        cutoff = datetime.now(UTC) - parse_duration(since) if since else None
    except ValueError as exc:
        print(f"--since: {exc}", file=sys.stderr)
        return 1
    store = Store.open(settings.database_url)
    count, text = audit.export_from(
        store, fmt, workspaces=[workspace] if workspace else None, since=cutoff
    )
    if output:
        with open(output, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        print(f"wrote {count} events to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
