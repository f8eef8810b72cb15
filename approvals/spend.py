"""What a workspace spent this month, from the bot's own records of the jobs it ran.

A job costs (end - start) x its instances x its cluster's node-hour price, counted from the
first of the month (UTC); a running job counts up to now. Jobs on computes the
configuration does not list, or on VM sizes without a known price, are left out and counted
so the figure can say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals.config import WorkspaceConfig
from approvals.costs import hours, money, node_hour_price
from approvals.payloads import JobPayload
from approvals.tables import JobRow, RequestRow
from shared.wording import counted

# What idle compute cost in a window, from the notification layer's records (plugged in by
# it, as `/aml idle` is): (session, workspace, since, now) -> USD.
IdleSpend = Callable[[Session, WorkspaceConfig, datetime, datetime], float]


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class JobCost:
    name: str
    requester: str
    compute: str
    nodes: int
    cost: float


@dataclass(frozen=True)
class Spend:
    total: float  # jobs and idle compute
    since: datetime
    jobs: list[JobCost] = field(default_factory=list)
    unpriced_jobs: int = 0
    idle: float = 0.0

    def by_requester(self) -> list[tuple[str, float]]:
        totals: dict[str, float] = {}
        for job in self.jobs:
            totals[job.requester] = totals.get(job.requester, 0.0) + job.cost
        return sorted(((who, round(c, 2)) for who, c in totals.items()), key=lambda x: -x[1])


def job_instances(request: RequestRow | None) -> int:
    if request is None or not isinstance(request.payload, JobPayload):
        return 1
    return request.payload.instances


def cost_of_job(
    ws: WorkspaceConfig, job: JobRow, request: RequestRow | None, since: datetime, now: datetime
) -> float | None:
    cluster = ws.cluster(job.compute or "")
    if cluster is None:
        return None
    price = node_hour_price(cluster, ws.region)
    if price is None:
        return None
    start = max(job.submitted_at, since)
    end = job.ended_at or now
    if end <= start:
        return 0.0
    return round(hours(end - start) * job_instances(request) * price, 2)


def spend_between(
    session: Session,
    ws: WorkspaceConfig,
    since: datetime,
    now: datetime,
    idle_spend: IdleSpend | None = None,
) -> Spend:
    rows = session.execute(
        select(JobRow, RequestRow)
        .outerjoin(RequestRow, RequestRow.id == JobRow.request_id)
        .where(JobRow.workspace == ws.name, JobRow.submitted_at < now)
        .where((JobRow.ended_at.is_(None)) | (JobRow.ended_at > since))
    ).all()
    jobs: list[JobCost] = []
    unpriced = 0
    for job, request in rows:
        cost = cost_of_job(ws, job, request, since, now)
        if cost is None:
            unpriced += 1
            continue
        jobs.append(
            JobCost(job.name, job.requester, job.compute or "", job_instances(request), cost)
        )
    jobs.sort(key=lambda j: -j.cost)
    idle = idle_spend(session, ws, since, now) if idle_spend is not None else 0.0
    total = round(sum(j.cost for j in jobs) + idle, 2)
    return Spend(total, since, jobs, unpriced, idle)


def month_to_date(
    session: Session, ws: WorkspaceConfig, now: datetime, idle_spend: IdleSpend | None = None
) -> Spend:
    return spend_between(session, ws, month_start(now), now, idle_spend)


def budget_line(
    ws: WorkspaceConfig, spent: float, adds: float | None = None, uncounted_jobs: int = 0
) -> str:
    """`$120.00 of $2,000.00 this month (6%); this request adds up to $24.48`; with jobs
    left out for want of a price, the figure is a lower bound and says so."""
    at_least = "at least " if uncounted_jobs else ""
    if ws.budget is None:
        text = f"{at_least}{money(spent)} this month (no budget set)"
    else:
        share = spent / ws.budget.monthly_usd * 100
        text = (
            f"{at_least}{money(spent)} of {money(ws.budget.monthly_usd)} this month "
            f"({at_least}{share:.0f}%)"
        )
    if uncounted_jobs:
        text += f", leaving out {counted(uncounted_jobs, 'job')} of unknown cost"
    if adds is not None:
        text += f"; this request adds up to {money(adds)}"
    return text


def job_end_line(
    session: Session,
    ws: WorkspaceConfig,
    job: JobRow,
    started: datetime | None,
    ended: datetime,
    now: datetime,
    idle_spend: IdleSpend | None = None,
) -> str | None:
    """`Cost: 2 nodes x $3.06/node-hour x 1h30m = $9.18; $120.00 of $2,000.00 this month`.

    The run itself is priced from its start (its submission if Azure gave no start); the
    month's figure comes from the bot's records, this job included."""
    cluster = ws.cluster(job.compute or "")
    if cluster is None:
        return None
    request = session.get(RequestRow, job.request_id) if job.request_id else None
    from approvals.costs import Estimate

    ran = Estimate(
        job_instances(request),
        node_hour_price(cluster, ws.region),
        ended - (started or job.submitted_at),
    )
    month = month_to_date(session, ws, now, idle_spend)
    return f"Cost: {ran.explain()}; spend {budget_line(ws, month.total, None, month.unpriced_jobs)}"
