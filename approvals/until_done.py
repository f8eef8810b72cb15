"""Grants that end with the work: access for as long as the holder's jobs on the cluster run.

A work-bound grant (`--until-done`, or a cluster's `until_done: true`) is an ordinary grant
with a time limit (`expires_at`), plus this: each round of the job sweep reads the
workspace's jobs and picks the holder's on the grant's cluster, whether submitted through
the bot (tagged `amlbot-requester`) or directly with the SDK, CLI or studio (Azure's
`createdBy` names the holder's object id, e-mail or name). While one is queued or running,
the grant's `work_seen_at` moves to now; once none is, and nothing of theirs has run for
`policy.until_done.idle_period`, the grant is revoked as `work_done`. At the time limit
the expiry sweep revokes it as `time_limit`. Before the time limit, a holder with a job
still running is warned once, with an Extend button.

    active --(no job for idle_period)--> revoked (work_done)
       \\--(expires_at reached)--------> revoked (time_limit)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from approvals.grants import BOT, GrantKeeper
from approvals.notice_kinds import queue_grant_expiring
from approvals.tables import GrantRow, GrantStatus
from approvals.wording import when
from commands.durations import format_duration
from shared.errors import UserError, WorkspaceError
from workspaces.types import JobInfo

log = logging.getLogger(__name__)

WORK_DONE = "work_done"
TIME_LIMIT = "time_limit"


@dataclass
class WorkRound:
    """What one round over a workspace's work-bound grants did."""

    ended: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)
    warned: list[int] = field(default_factory=list)


class WorkBoundGrants(GrantKeeper):
    def holder_identities(self, grant: GrantRow) -> set[str]:
        """Every name Azure may record as the holder's: principal object id, e-mail, name."""
        names = {grant.grantee, grant.principal_object_id}
        person = self.directory.person(grant.grantee)
        if person is not None:
            names |= {n for n in (person.email, person.object_id, person.slack_id) if n}
        return {n.lower() for n in names if n}

    def holders_jobs(self, grant: GrantRow, jobs: list[JobInfo]) -> list[JobInfo]:
        """The holder's jobs on the grant's cluster, through the bot or directly."""
        identities = self.holder_identities(grant)
        return [
            job
            for job in jobs
            if job.compute == grant.cluster
            and (
                job.tags.get("amlbot-requester") == grant.grantee
                or (job.created_by or "").lower() in identities
            )
        ]

    def end_grants_whose_work_ended(self, workspace: str) -> WorkRound:
        """One round over the workspace's active work-bound grants (reads its jobs once)."""
        ws = self.config.workspaces[workspace]
        result = WorkRound()
        with self.store.transaction() as session:
            grants = list(
                session.scalars(
                    select(GrantRow)
                    .where(
                        GrantRow.workspace == workspace,
                        GrantRow.status == GrantStatus.ACTIVE,
                        GrantRow.until_done.is_(True),
                    )
                    .order_by(GrantRow.id)
                )
            )
        if not grants:
            return result
        jobs = self.backend_for(workspace).list_jobs()
        now = self.clock.now()
        for grant in grants:
            if grant.expires_at <= now:
                continue  # the expiry sweep ends it, as `time_limit`
            mine = self.holders_jobs(grant, jobs)
            running = [job for job in mine if not job.status.is_terminal]
            if running:
                self._seen_working(grant, now)
                result.busy.append(grant.id)
                if self._warn_before_limit(grant, running, now, ws.policy.grant_expiry_warning):
                    result.warned.append(grant.id)
                continue
            ended = [job.ended_at for job in mine if job.ended_at is not None]
            last = max([grant.granted_at, *(t for t in [grant.work_seen_at] if t), *ended])
            if now - last < ws.policy.until_done.idle_period:
                continue
            reason = _work_done_reason(mine, ws.policy.until_done.idle_period, last)
            try:
                self.revoke_grant(grant.id, BOT, reason=reason, end_reason=WORK_DONE)
                result.ended.append(grant.id)
            except UserError:
                continue  # revoked meanwhile (by its holder, a lead, another replica)
            except WorkspaceError as exc:
                log.warning("ending work-bound grant %s failed, will retry: %s", grant.id, exc)
        return result

    def _seen_working(self, grant: GrantRow, now: datetime) -> None:
        with self.store.transaction() as session:
            session.execute(
                update(GrantRow)
                .where(GrantRow.id == grant.id, GrantRow.status == GrantStatus.ACTIVE)
                .values(work_seen_at=now)
                .execution_options(synchronize_session=False)
            )

    def _warn_before_limit(
        self, grant: GrantRow, running: list[JobInfo], now: datetime, warning: timedelta
    ) -> bool:
        """Once per grant, within `grant_expiry_warning` of the time limit, while a job of
        the holder's still runs on the cluster: the warning with its Extend button."""
        if grant.warned_at is not None or grant.expires_at - warning > now:
            return False
        with self.store.transaction() as session:
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
                return False
            queue_grant_expiring(session, grant, now, still_running=running)
        return True


def _work_done_reason(mine: list[JobInfo], idle: timedelta, last: datetime) -> str:
    finished = [job for job in mine if job.ended_at is not None]
    if finished:
        latest = max(finished, key=lambda job: job.ended_at or last)
        return (
            f"your work there ended: your last job `{latest.name}` finished "
            f"({latest.status.value}) {when(latest.ended_at)} and nothing of yours ran for "
            f"{format_duration(idle)}"
        )
    return f"your work there ended: no job of yours ran on it for {format_duration(idle)}"
