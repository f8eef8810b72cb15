"""Requests nobody decides: remind their approvers, then hand them to fallback approvers.

`policy.escalation`: `remind_after` after a request was opened, the approvers who have not
decided are reminded (once); `escalate_after` after it was opened, the request is escalated
(once): its fallback approvers may decide it too, each gets a copy of the card, and every
copy of the card says so. Each step is claimed by a compare-and-set on its column
(`nudged_at`, `escalated_at`), in the transaction that queues its messages, so several
replicas never send one twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from approvals import audit, outbox
from approvals.config import AppConfig, WorkspaceConfig
from approvals.directory import fallback_approvers
from approvals.states import RequestStatus
from approvals.store import Store
from approvals.tables import RequestRow, VoteRow
from approvals.wording import short_ref, when
from commands.durations import format_duration

# The outbox kinds these steps queue; `request.reminder` is rendered by
# bot/slack/renderers.py (one reply in the card's thread naming the approvers, and a DM to
# each).
REQUEST_REMINDER = "request.reminder"
# {request_id, approvers, text}: a copy of the card to each fallback approver, kept with the
# request's other cards so that all of them are redrawn together.
REQUEST_ESCALATED = "request.escalated"


@dataclass
class EscalationRound:
    nudged: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)


def may_decide_escalated(row: RequestRow, person: str, config: AppConfig) -> bool:
    """A fallback approver may decide a request once it has been escalated."""
    ws = config.workspaces.get(row.workspace)
    if ws is None or row.escalated_at is None:
        return False
    return person in fallback_approvers(ws, config, row.requester)


def escalate_pending_requests(store: Store, config: AppConfig, now: datetime) -> EscalationRound:
    done = EscalationRound()
    with store.transaction() as session:
        pending = list(
            session.scalars(
                select(RequestRow)
                .where(
                    RequestRow.status == RequestStatus.PENDING,
                    (RequestRow.nudged_at.is_(None)) | (RequestRow.escalated_at.is_(None)),
                )
                .order_by(RequestRow.id)
            )
        )
    for row in pending:
        ws = config.workspaces.get(row.workspace)
        if ws is None:
            continue
        policy = ws.policy.escalation
        if (
            policy.remind_after is not None
            and row.nudged_at is None
            and now >= row.created_at + policy.remind_after
            and _nudge(store, ws, row, now)
        ):
            done.nudged.append(row.id)
        if (
            policy.escalate_after is not None
            and row.escalated_at is None
            and now >= row.created_at + policy.escalate_after
            and _escalate(store, config, ws, row, now)
        ):
            done.escalated.append(row.id)
    return done


def _claim(session: Session, row: RequestRow, column: str, now: datetime, **more: object) -> bool:
    claimed = session.execute(
        update(RequestRow)
        .where(
            RequestRow.id == row.id,
            RequestRow.status == RequestStatus.PENDING,
            getattr(RequestRow, column).is_(None),
        )
        .values({column: now, **more})
        .execution_options(synchronize_session=False)
    )
    return getattr(claimed, "rowcount", 0) == 1


def _not_voted(session: Session, row: RequestRow, approvers: list[str]) -> list[str]:
    voted = set(session.scalars(select(VoteRow.approver).where(VoteRow.request_id == row.id)))
    return [a for a in approvers if a != row.requester and a not in voted]


def _nudge(store: Store, ws: WorkspaceConfig, row: RequestRow, now: datetime) -> bool:
    with store.transaction() as session:
        if not _claim(session, row, "nudged_at", now):
            return False
        leads = _not_voted(session, row, ws.team_leads)
        if leads:
            text = (
                f"Reminder: request {short_ref(row.id)} from {row.requester} ({row.summary}) "
                f"has waited {format_duration(now - row.created_at)} for a team lead: "
                f'`/aml approve {row.id}` or `/aml deny {row.id} --reason "..."`.'
            )
            outbox.enqueue(
                session,
                REQUEST_REMINDER,
                {"request_id": row.id, "leads": leads, "text": text},
                now=now,
                dedupe_key=f"nudge:{row.id}",
            )
    return True


def _escalate(
    store: Store, config: AppConfig, ws: WorkspaceConfig, row: RequestRow, now: datetime
) -> bool:
    fallbacks = fallback_approvers(ws, config, row.requester)
    with store.transaction() as session:
        if not _claim(session, row, "escalated_at", now, version=RequestRow.version + 1):
            return False
        audit.record(
            session,
            at=now,
            actor="amlbot",
            action=f"{row.action}.escalated",
            outcome="escalated",
            workspace=row.workspace,
            target=short_ref(row.id),
            to=fallbacks,
        )
        # Every copy of the card now says it was escalated.
        outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
        if fallbacks:
            text = (
                f"Escalated to you: request {short_ref(row.id)} from {row.requester} "
                f"({row.summary}) waited {format_duration(now - row.created_at)} with no "
                f"decision from a team lead of `{ws.name}`. You may decide it: "
                f'`/aml approve {row.id}` or `/aml deny {row.id} --reason "..."`; it expires '
                f"{when(row.expires_at)}."
            )
            outbox.enqueue(
                session,
                REQUEST_ESCALATED,
                {"request_id": row.id, "approvers": fallbacks, "text": text},
                now=now,
                dedupe_key=f"escalated:{row.id}",
            )
    return True
