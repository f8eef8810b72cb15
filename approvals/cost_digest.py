"""The weekly cost digest to a workspace's leads: the week's spend and budget, the top
spenders, the jobs by cost, and the idle cost the bot's fixes avoided.

Sent to every workspace with a `budget:`, once a week (the sweep `costs:WS` is claimed in
the database; its outbox rows are keyed by ISO week, so a replica or a restart never sends
a week's digest twice).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import outbox
from approvals.config import WorkspaceConfig
from approvals.core import Basics
from approvals.costs import money
from approvals.idle.spend import idle_spend_between
from approvals.spend import budget_line, month_to_date, spend_between
from approvals.sweep_tables import IdleItemRow
from shared.wording import counted

WEEK = timedelta(days=7)
# What the idle digest's fixes leave behind, by their recorded note (idle_actions.py).
_FIX_NOTES = ("stopped", "minimum set to 0", "idle time set")


def idle_cost_avoided(
    session: Session, ws: WorkspaceConfig, since: datetime, now: datetime
) -> float:
    """Per fixed finding: what it cost an hour when fixed, times the hours since (this week)."""
    rows = session.scalars(
        select(IdleItemRow).where(
            IdleItemRow.workspace == ws.name, IdleItemRow.handled_at.is_not(None)
        )
    )
    total = 0.0
    for row in rows:
        note = row.handled_note or ""
        hourly = row.finding.get("hourly_cost")
        if not note.startswith(_FIX_NOTES) or not isinstance(hourly, int | float):
            continue
        start = max(row.handled_at or now, since)
        total += hourly * max((now - start).total_seconds(), 0) / 3600
    return round(total, 2)


def digest_text(session: Session, ws: WorkspaceConfig, now: datetime) -> str:
    since = now - WEEK
    week = spend_between(session, ws, since, now, idle_spend_between)
    month = month_to_date(session, ws, now, idle_spend_between)
    lines = [
        f"*Weekly cost digest for `{ws.name}`* ({since:%Y-%m-%d} to {now:%Y-%m-%d})",
        f"Spent this week: {money(week.total)} ({counted(len(week.jobs), 'job')}, idle compute "
        f"{money(week.idle)}); "
        f"month to date: {budget_line(ws, month.total, None, month.unpriced_jobs)}",
    ]
    spenders = week.by_requester()[:5]
    if spenders:
        lines.append("Top spenders: " + ", ".join(f"{who} {money(cost)}" for who, cost in spenders))
    if week.jobs:
        lines.append("Jobs by cost:")
        lines += [
            f"  • `{job.name}` by {job.requester} on `{job.compute}` x{job.nodes}: "
            f"{money(job.cost)}"
            for job in week.jobs[:5]
        ]
    lines.append(
        f"Idle cost avoided by the bot's fixes: {money(idle_cost_avoided(session, ws, since, now))}"
    )
    if week.unpriced_jobs:
        lines.append(
            f"({counted(week.unpriced_jobs, 'job')} of unknown cost left out: on computes the "
            "configuration does not list, or VM sizes without a known price)"
        )
    lines.append("Estimates from list prices: nodes x price x time, never an invoice.")
    return "\n".join(lines)


def send_cost_digest(core: Basics, workspace: str, now: datetime) -> bool:
    """Queue this week's digest to each lead by DM. True if it was queued now."""
    ws = core.config.workspaces[workspace]
    if ws.budget is None:
        return False
    year, week, _ = now.isocalendar()
    with core.store.transaction() as session:
        text = digest_text(session, ws, now)
        for lead in ws.team_leads:
            outbox.notify_person(
                session, lead, text, now=now, dedupe_key=f"costs:{ws.name}:{year}-{week}:{lead}"
            )
    return True
