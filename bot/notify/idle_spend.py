"""What idle compute cost, from the bot's own records of the idle digests it posted.

Each reported idle episode (a compute idle since a given moment) cost its hourly price from
when it went idle (or the window's start) to the last digest that still saw it; a later
digest of the same episode replaces an earlier one, so nothing is counted twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals.config import WorkspaceConfig
from bot.notify.tables import IdleDigestRow, IdleItemRow


def idle_spend_between(
    session: Session, ws: WorkspaceConfig, since: datetime, now: datetime
) -> float:
    rows = session.execute(
        select(IdleItemRow.compute, IdleItemRow.finding, IdleDigestRow.created_at)
        .join(IdleDigestRow, IdleDigestRow.id == IdleItemRow.digest_id)
        .where(
            IdleItemRow.workspace == ws.name,
            IdleDigestRow.created_at > since,
            IdleDigestRow.created_at <= now,
        )
    ).all()
    episodes: dict[tuple[str, str], float] = {}
    for compute, finding, seen_at in rows:
        hourly = finding.get("hourly_cost")
        idle_since = finding.get("idle_since")
        if not isinstance(hourly, int | float) or not isinstance(idle_since, str):
            continue
        start = max(datetime.fromisoformat(idle_since), since)
        cost = hourly * max((seen_at - start).total_seconds(), 0) / 3600
        key = (compute, idle_since)
        episodes[key] = max(episodes.get(key, 0.0), cost)
    return round(sum(episodes.values()), 2)
