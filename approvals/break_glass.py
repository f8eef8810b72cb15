"""Break-glass access: a member self-approves short access in an emergency, where policy
allows it (`policy.break_glass`), and a team lead must review it afterwards.

The access is an ordinary grant, recorded as a request run within policy (`decided_by`
`break-glass`), capped at `policy.break_glass.max_duration`. In the transaction that
records the grant's request, a *review* request is opened (action `review`): it has a card
with Approve (the emergency was justified) and Deny (it was not: the grant, if still
active, is revoked), is reminded and escalated like any pending request, and expires after
`policy.break_glass.review_within` (which the audit trail shows as an unreviewed use).
Every lead of the workspace is told at once by DM.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from approvals import audit, outbox
from approvals.config import WorkspaceConfig
from approvals.payloads import AccessPayload, ReviewPayload
from approvals.states import RequestStatus
from approvals.tables import GrantRow, GrantStatus, RequestRow
from approvals.wording import short_ref
from approvals.workflow import Workflow, record_request
from commands.durations import format_duration
from shared.errors import PermissionRefusedError, UsageError, UserError, WorkspaceError

log = logging.getLogger(__name__)

BREAK_GLASS = "break-glass"


def break_glass_duration(ws: WorkspaceConfig, person: str, asked: timedelta | None) -> timedelta:
    """How long the emergency access lasts, or why it may not be had; each refusal names
    the rule and its key."""
    policy = ws.policy.break_glass
    if not policy.allowed:
        raise PermissionRefusedError(
            f"Break-glass access is off in `{ws.name}` (rule "
            f"`policy.break_glass.allowed` is false). Ask a team lead instead: "
            f'`/aml access request CLUSTER --reason "..."`.'
        )
    if policy.members and person not in policy.members:
        raise PermissionRefusedError(
            f"You may not use break-glass access in `{ws.name}` (rule "
            f"`policy.break_glass.members` names who may). Ask a team lead instead."
        )
    duration = asked or policy.max_duration
    if duration > policy.max_duration:
        raise UsageError(
            f"`--for {format_duration(duration)}` is longer than break-glass access may last "
            f"in `{ws.name}` (rule `policy.break_glass.max_duration`: at most "
            f"{format_duration(policy.max_duration)}).",
            field="--for",
            example=f"--for {format_duration(policy.max_duration)}",
        )
    return duration


class BreakGlass(Workflow):
    def break_glass(
        self,
        ws: WorkspaceConfig,
        person: str,
        cluster: str,
        duration: timedelta,
        reason: str,
    ) -> tuple[RequestRow, RequestRow]:
        """Grant emergency access now; open its review and tell every lead. Returns the
        access request (carried out) and the review request (pending)."""
        self.refuse_secrets(person, reason)
        now = self.clock.now()
        payload = AccessPayload(
            cluster=cluster, duration_seconds=duration.total_seconds(), emergency=True
        )
        summary = f"break-glass access to {cluster} for {format_duration(duration)}"

        def create(session: Session) -> RequestRow:
            access = record_request(
                session,
                RequestRow(
                    workspace=ws.name,
                    action=payload.action,
                    requester=person,
                    payload=payload,
                    summary=summary,
                    reason=reason,
                    status=RequestStatus.APPROVED,
                    approvals_needed=0,
                    created_at=now,
                    decided_by=BREAK_GLASS,
                    decided_at=now,
                    version=1,
                    **self.new_lease(now),
                ),
                summary,
                policy="policy.break_glass",
                emergency=True,
            )
            review = record_request(
                session,
                RequestRow(
                    workspace=ws.name,
                    action="review",
                    requester=person,
                    payload=ReviewPayload(
                        reviews=access.id,
                        cluster=cluster,
                        duration_seconds=duration.total_seconds(),
                    ),
                    summary=f"review of {summary} ({short_ref(access.id)})",
                    reason=reason,
                    status=RequestStatus.PENDING,
                    approvals_needed=1,
                    created_at=now,
                    expires_at=now + ws.policy.break_glass.review_within,
                    version=1,
                ),
                f"review of break-glass request {short_ref(access.id)}",
            )
            # The access request remembers its review, so `/aml request show` says so.
            session.execute(
                update(RequestRow)
                .where(RequestRow.id == access.id)
                .values(payload=payload.model_copy(update={"review_request": review.id}))
                .execution_options(synchronize_session=False)
            )
            outbox.enqueue(session, outbox.REQUEST_OPENED, {"request_id": review.id}, now=now)
            for lead in ws.team_leads:
                if lead == person:
                    continue
                outbox.notify_person(
                    session,
                    lead,
                    f":rotating_light: {person} used break-glass access to `{cluster}` in "
                    f"`{ws.name}` for {format_duration(duration)} (request "
                    f"{short_ref(access.id)}): {reason}. A team lead must review it: "
                    f"request {short_ref(review.id)} (`/aml approve {review.id}` if it was "
                    f'justified, `/aml deny {review.id} --reason "..."` to revoke it).',
                    now=now,
                    request_id=review.id,
                    dedupe_key=f"break-glass:{access.id}:{lead}",
                )
            return access

        # Opened before by the same delivery: its review is the one that opened with it.
        done = self.execute(self.open_once(payload.action, create).id)
        kept = done.payload
        review_id = kept.review_request if isinstance(kept, AccessPayload) else None
        if review_id is None:
            raise RuntimeError(f"break-glass request {short_ref(done.id)} has no review")
        with self.store.transaction() as session:
            return done, self.load(session, review_id)

    def deny(self, request_id: int, actor: str, reason: str) -> RequestRow:
        row = super().deny(request_id, actor, reason)
        if isinstance(row.payload, ReviewPayload):
            self.deny_review(row, row.payload, actor)
        return row

    def deny_review(self, review: RequestRow, reviewed: ReviewPayload, actor: str) -> None:
        """A review denied: the emergency was not justified, so the access it gave ends now
        (if it has not already). Should this not happen (the process dies once the denial
        is recorded, or the access is still being given), the sweep does it:
        `revoke_expired_grants`."""
        with self.store.transaction() as session:
            grant = session.scalars(
                select(GrantRow).where(GrantRow.request_id == reviewed.reviews)
            ).first()
            audit.record(
                session,
                at=self.clock.now(),
                actor=actor,
                action="review.denied",
                outcome="not justified",
                workspace=review.workspace,
                target=short_ref(review.id),
            )
        if grant is not None and grant.status == GrantStatus.ACTIVE:
            self.revoke_grant(grant.id, actor, reason=_not_justified(actor))

    def revoke_expired_grants(self) -> list[int]:
        """Every grant past its expiry, and every break-glass grant still active though
        its review was denied."""
        return super().revoke_expired_grants() + self._revoke_where_review_denied()

    def _revoke_where_review_denied(self) -> list[int]:
        # Break-glass grants still active are few (they last hours at most), so the round
        # reads them and their reviews, not every review ever denied.
        with self.store.transaction() as session:
            given = {
                grant_id: access.payload.review_request
                for grant_id, access in session.execute(
                    select(GrantRow.id, RequestRow)
                    .join(RequestRow, RequestRow.id == GrantRow.request_id)
                    .where(
                        GrantRow.status == GrantStatus.ACTIVE,
                        RequestRow.decided_by == BREAK_GLASS,
                    )
                )
                if isinstance(access.payload, AccessPayload)
                and access.payload.review_request is not None
            }
            if not given:
                return []
            deciders = {
                review_id: decided_by
                for review_id, decided_by in session.execute(
                    select(RequestRow.id, RequestRow.decided_by).where(
                        RequestRow.id.in_(set(given.values())),
                        RequestRow.status == RequestStatus.DENIED,
                    )
                )
            }
        still_active = [
            (grant_id, deciders[review_id] or BREAK_GLASS)
            for grant_id, review_id in given.items()
            if review_id in deciders
        ]
        revoked = []
        for grant_id, actor in still_active:
            log.warning(
                "grant %s is active though its break-glass review was denied by %s; revoking",
                grant_id,
                actor,
            )
            try:
                self.revoke_grant(grant_id, actor, reason=_not_justified(actor))
                revoked.append(grant_id)
            except UserError:
                continue  # another replica claimed it first
            except WorkspaceError as exc:  # left `revoking`: the expiry sweep finishes it
                log.warning("revoking grant %s failed, will retry: %s", grant_id, exc)
        return revoked


def _not_justified(actor: str) -> str:
    return f"{actor} found the break-glass use not justified on review"
