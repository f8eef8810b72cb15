"""Grants and requests against the clock: warn before a grant ends, remind leads before a
request expires, and hand revocation and expiry to the workflow (never done twice here).

Each warning and reminder is claimed by a compare-and-set on its row (`warned_at`,
`reminded_at` still empty), in the transaction that queues the message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from approvals import outbox
from approvals.core import Basics, Sweeps
from approvals.notice_kinds import REQUEST_REMINDER, queue_grant_expiring
from approvals.states import RequestStatus
from approvals.tables import GrantRow, GrantStatus, RequestRow, VoteRow
from approvals.wording import short_ref, when
from commands.durations import format_duration
from commands.models import AccessRequest
from shared.errors import NotFoundUserError, PermissionRefusedError


def _longest(values: list[timedelta]) -> timedelta:
    return max(values, default=timedelta(0))


def warn_expiring_grants(core: Basics, now: datetime) -> list[int]:
    """Offer each grantee an Extend button once, `grant_expiry_warning` before expiry."""
    workspaces = core.config.workspaces
    horizon = now + _longest([ws.policy.grant_expiry_warning for ws in workspaces.values()])
    with core.store.transaction() as session:
        grants = list(
            session.scalars(
                select(GrantRow).where(
                    GrantRow.status == GrantStatus.ACTIVE,
                    GrantRow.warned_at.is_(None),
                    GrantRow.expires_at > now,
                    GrantRow.expires_at <= horizon,
                    # Work-bound grants are warned by the work sweep, and only while a job
                    # of the holder's still runs (approvals/until_done.py).
                    GrantRow.until_done.is_(False),
                )
            )
        )
    warned = []
    for grant in grants:
        ws = workspaces.get(grant.workspace)
        if ws is None or grant.expires_at - ws.policy.grant_expiry_warning > now:
            continue
        with core.store.transaction() as session:
            claimed = session.execute(
                update(GrantRow)
                .where(
                    GrantRow.id == grant.id,
                    GrantRow.warned_at.is_(None),
                    GrantRow.status == GrantStatus.ACTIVE,
                )
                .values(warned_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                continue
            queue_grant_expiring(session, grant, now)
            warned.append(grant.id)
    return warned


def remind_pending_requests(core: Basics, now: datetime) -> list[int]:
    """Remind the leads who have not voted, once, `remind_before_expiry` before expiry."""
    workspaces = core.config.workspaces
    horizon = now + _longest([ws.policy.remind_before_expiry for ws in workspaces.values()])
    with core.store.transaction() as session:
        requests = list(
            session.scalars(
                select(RequestRow).where(
                    RequestRow.status == RequestStatus.PENDING,
                    RequestRow.reminded_at.is_(None),
                    RequestRow.expires_at > now,
                    RequestRow.expires_at <= horizon,
                )
            )
        )
    reminded = []
    for request in requests:
        ws = workspaces.get(request.workspace)
        if ws is None or request.expires_at is None:
            continue
        if request.expires_at - ws.policy.remind_before_expiry > now:
            continue
        with core.store.transaction() as session:
            claimed = session.execute(
                update(RequestRow)
                .where(
                    RequestRow.id == request.id,
                    RequestRow.reminded_at.is_(None),
                    RequestRow.status == RequestStatus.PENDING,
                )
                .values(reminded_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                continue
            voted = set(
                session.scalars(select(VoteRow.approver).where(VoteRow.request_id == request.id))
            )
            text = (
                f"Reminder: request {short_ref(request.id)} from {request.requester} "
                f"({request.summary}) expires {when(request.expires_at)}, in "
                f"{format_duration(request.expires_at - now)}, unless a team lead decides it: "
                f'`/aml approve {request.id}` or `/aml deny {request.id} --reason "..."`.'
            )
            leads = [
                lead for lead in ws.team_leads if lead != request.requester and lead not in voted
            ]
            if leads:
                # One message for all of them: one reply in the card's thread, not one per lead.
                outbox.enqueue(
                    session,
                    REQUEST_REMINDER,
                    {"request_id": request.id, "leads": leads, "text": text},
                    now=now,
                    dedupe_key=f"remind:{request.id}",
                )
            reminded.append(request.id)
    return reminded


def revoke_expired_grants(sweeps: Sweeps) -> list[int]:
    """The workflow's revocation: each grant claimed by one UPDATE, the grantee told."""
    return sweeps.revoke_expired_grants()


def expire_requests(sweeps: Sweeps) -> list[int]:
    """The workflow's expiry: each request moved by one compare-and-set, the requester told."""
    return sweeps.expire_pending_requests()


def resume_stalled_requests(sweeps: Sweeps) -> list[int]:
    """The workflow's recovery: requests whose process died with their side effect in
    flight, each claimed by one compare-and-set on its lease and carried on."""
    return sweeps.resume_stalled()


def extension_request(core: Basics, person: str, grant_id: int) -> AccessRequest:
    """The access request an Extend button makes: same cluster and workspace, as long as
    the grant it extends (the core caps it by policy)."""
    with core.store.transaction() as session:
        grant = session.get(GrantRow, grant_id)
    if grant is None:
        raise NotFoundUserError(f"There is no grant {short_ref(grant_id)}.")
    if grant.grantee != person:
        raise PermissionRefusedError(
            f"Grant {short_ref(grant.id)} belongs to {grant.grantee}; only they can extend it."
        )
    return AccessRequest(
        workspace=grant.workspace,
        cluster=grant.cluster,
        until_done=grant.until_done,
        duration=grant.expires_at - grant.granted_at,
        reason=f"extend grant {short_ref(grant.id)}, which ends {when(grant.expires_at)}",
    )
