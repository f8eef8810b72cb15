"""What the store holds, counted for the metrics each process serves (read at each scrape;
the same in every process)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from approvals.store import Store
from approvals.tables import (
    GrantRow,
    GrantStatus,
    InboxRow,
    InboxStatus,
    OutboxRow,
    OutboxStatus,
    RequestRow,
    RequestStatus,
)


@dataclass(frozen=True)
class StoreCounts:
    requests: list[tuple[str, RequestStatus, int]]  # (action, status, how many)
    inbox: dict[InboxStatus, int]  # pending, running, dead
    inbox_retrying: int
    inbox_oldest: datetime | None  # received_at of the oldest pending or running item
    outbox: dict[OutboxStatus, int]  # pending, dead, failed
    outbox_retrying: int
    outbox_oldest: datetime | None  # created_at of the oldest pending message
    grants: dict[GrantStatus, int]


def read(store: Store) -> StoreCounts:
    with store.transaction() as session:
        requests = [
            (str(action), RequestStatus(state), int(count))
            for action, state, count in session.execute(
                select(RequestRow.action, RequestRow.status, func.count()).group_by(
                    RequestRow.action, RequestRow.status
                )
            ).all()
        ]
        inbox_counts = dict(
            session.execute(
                select(InboxRow.status, func.count())
                .where(
                    InboxRow.status.in_(
                        [InboxStatus.PENDING, InboxStatus.RUNNING, InboxStatus.DEAD]
                    )
                )
                .group_by(InboxRow.status)
            ).all()
        )
        inbox_retries = session.scalar(
            select(func.count()).where(
                InboxRow.status == InboxStatus.PENDING, InboxRow.attempts > 0
            )
        )
        inbox_first = session.scalar(
            select(func.min(InboxRow.received_at)).where(
                InboxRow.status.in_([InboxStatus.PENDING, InboxStatus.RUNNING])
            )
        )
        outbox_counts = dict(
            session.execute(
                select(OutboxRow.status, func.count())
                .where(
                    OutboxRow.status.in_(
                        [OutboxStatus.PENDING, OutboxStatus.DEAD, OutboxStatus.FAILED]
                    )
                )
                .group_by(OutboxRow.status)
            ).all()
        )
        outbox_retries = session.scalar(
            select(func.count()).where(
                OutboxRow.status == OutboxStatus.PENDING, OutboxRow.attempts > 0
            )
        )
        outbox_first = session.scalar(
            select(func.min(OutboxRow.created_at)).where(OutboxRow.status == OutboxStatus.PENDING)
        )
        grant_counts = dict(
            session.execute(select(GrantRow.status, func.count()).group_by(GrantRow.status)).all()
        )
    return StoreCounts(
        requests=requests,
        inbox=inbox_counts,
        inbox_retrying=inbox_retries or 0,
        inbox_oldest=inbox_first,
        outbox=outbox_counts,
        outbox_retrying=outbox_retries or 0,
        outbox_oldest=outbox_first,
        grants=grant_counts,
    )
