"""What a person has going on (the App Home shows it): requests waiting for them, their
own pending requests, active grants and recent jobs, straight from the database (no Azure
call: the tab must open fast, and the job statuses are the last ones the bot saw)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select

from approvals.core import Basics
from approvals.directory import Directory, fallback_approvers
from approvals.states import RequestStatus
from approvals.tables import GrantRow, GrantStatus, JobRow, RequestRow

WAITING_SHOWN = 20
LIST_SHOWN = 10


@dataclass
class HomeData:
    person: str
    now: datetime
    is_lead: bool
    waiting: list[RequestRow] = field(default_factory=list)
    waiting_total: int = 0
    pending: list[RequestRow] = field(default_factory=list)
    grants: list[GrantRow] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)


def home_data(core: Basics, directory: Directory, person: str) -> HomeData:
    lead_of = [ws.name for ws in directory.workspaces_of(person) if person in ws.team_leads]
    # Where the person is a fallback approver: the requests escalated to them.
    fallback_of = [
        ws.name
        for ws in core.config.workspaces.values()
        if person in fallback_approvers(ws, core.config, requester="")
    ]
    now = core.clock.now()
    data = HomeData(person=person, now=now, is_lead=bool(lead_of or fallback_of))
    with core.store.transaction() as session:
        if lead_of or fallback_of:
            waiting = (
                select(RequestRow)
                .where(
                    or_(
                        RequestRow.workspace.in_(lead_of),
                        and_(
                            RequestRow.workspace.in_(fallback_of),
                            RequestRow.escalated_at.is_not(None),
                        ),
                    ),
                    RequestRow.status == RequestStatus.PENDING,
                    RequestRow.requester != person,
                )
                .order_by(RequestRow.id)
            )
            data.waiting = list(session.scalars(waiting.limit(WAITING_SHOWN)))
            data.waiting_total = int(
                session.scalar(select(func.count()).select_from(waiting.subquery())) or 0
            )
        data.pending = list(
            session.scalars(
                select(RequestRow)
                .where(RequestRow.requester == person, RequestRow.status == RequestStatus.PENDING)
                .order_by(RequestRow.id.desc())
                .limit(LIST_SHOWN)
            )
        )
        data.grants = list(
            session.scalars(
                select(GrantRow)
                .where(
                    GrantRow.grantee == person,
                    GrantRow.status == GrantStatus.ACTIVE,
                    GrantRow.expires_at > now,
                )
                .order_by(GrantRow.expires_at)
                .limit(LIST_SHOWN)
            )
        )
        data.jobs = list(
            session.scalars(
                select(JobRow)
                .where(JobRow.requester == person)
                .order_by(JobRow.id.desc())
                .limit(LIST_SHOWN)
            )
        )
    return data
