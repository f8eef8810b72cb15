"""Carrying out an approved request exactly once, and resuming it after a crash mid-way.

Calls to the workspace happen between transactions, never inside one, so a slow Azure
call holds no database lock. Names of what is made in Azure derive from the request, so a
retry cannot make a second role assignment or job. The process carrying a request out holds
a lease on it (approvals/leases.py); when the lease runs out, a sweep resumes the request.

    approved -(lease taken)-> executing -(heartbeat)-> succeeded | failed   (outcome told once)
                                  |  Azure failed for a passing reason: short lease, retried
                                  |  process died: lease runs out, a sweep claims and resumes
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from approvals import audit, leases, outbox
from approvals.config import WorkspaceConfig
from approvals.states import RequestStatus, transition
from approvals.tables import GrantRow, JobRow, RequestRow
from approvals.wording import short_ref, when
from approvals.workflow_base import WorkflowBase
from commands.durations import format_duration
from shared.errors import AmlbotError, ConflictError, UserError
from shared.values import DatastoreKind
from workspaces.types import DatastoreSpec, JobSpec, RoleGrantSpec

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("5b0f3c1e-8d0a-4f7e-9b7c-616d6c626f74")  # fixed: names must be stable

PROPAGATION_NOTE = "Azure can take up to about 10 minutes to apply a role change everywhere."


def assignment_name(workspace: str, request_id: int) -> str:
    """The role assignment's name, derived from the request so a retry cannot make a second."""
    return str(uuid.uuid5(_NAMESPACE, f"grant:{workspace}:{request_id}"))


def job_name(workspace: str, request_id: int) -> str:
    suffix = uuid.uuid5(_NAMESPACE, f"job:{workspace}:{request_id}").hex[:8]
    return f"amlbot-{request_id}-{suffix}"


class Execution(WorkflowBase):
    # How long a lease lasts, how often (wall-clock seconds) the heartbeat renews it (None:
    # a third of the lease), and how many carry-outs of one request before giving up.
    lease_length: timedelta = leases.LEASE
    heartbeat_every: float | None = None
    max_attempts: int = leases.MAX_ATTEMPTS

    @property
    def holder(self) -> str:
        return leases.process_holder()

    def new_lease(self, now: datetime) -> dict[str, Any]:
        """The lease columns for a request this process is about to put in flight."""
        return leases.taken(now, self.holder, self.lease_length)

    def execute(self, request_id: int) -> RequestRow:
        """Carry out an approved request exactly once: only the caller that moves it to
        `executing` acts; everyone else sees the state it is in."""
        now = self.clock.now()
        with self.store.transaction() as session:
            row = self.load(session, request_id)
            won = transition(
                session,
                row.id,
                RequestStatus.APPROVED,
                RequestStatus.EXECUTING,
                attempts=RequestRow.attempts + 1,
                result=self._plan(row, now),
                **self.new_lease(now),
            )
            if won:
                outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
        with self.store.transaction() as session:
            row = self.load(session, request_id)
        if not won:
            return row
        return self._attempt(row)

    def resume_stalled(self) -> list[int]:
        """Resume every request in flight whose lease ran out: its process died between
        two transactions (or before Azure answered). The sweeps call this every round, on
        every replica; each request is claimed by compare-and-set, so one replica resumes it."""
        with self.store.transaction() as session:
            stalled = leases.stalled(session, self.clock.now())
        return [request_id for request_id in stalled if self.resume(request_id) is not None]

    def resume(self, request_id: int, by: str = "amlbot") -> RequestRow | None:
        """Claim a request whose lease ran out and carry it on from where it stopped. None if
        it is not stalled (its holder is alive, another replica claimed it, or it ended)."""
        now = self.clock.now()
        with self.store.transaction() as session:
            row = self.load(session, request_id)
            if row.status not in leases.IN_FLIGHT:
                return None
            status = RequestStatus(row.status)
            if not leases.claim_stalled(
                session, row.id, status, now, self.holder, self.lease_length
            ):
                return None
            audit.record(
                session,
                at=now,
                actor=by,
                action=f"{row.action}.resumed",
                outcome=status.value,
                workspace=row.workspace,
                target=short_ref(row.id),
                left_by=row.lease_holder,
            )
        log.warning(
            "resuming request %s left %s by %s (lease ran out %s)",
            row.id,
            status.value,
            row.lease_holder or "a process from before leases",
            row.lease_until.isoformat() if row.lease_until else "never set",
        )
        if status == RequestStatus.APPROVED:
            # Its process died before touching Azure: carry it out as if just approved.
            return self.execute(row.id)
        with self.store.transaction() as session:
            row = self.load(session, request_id)
        if row.attempts > self.max_attempts:
            return self._finish_failed(
                row,
                f"it was interrupted {self.max_attempts} times while being carried out, so "
                "the bot gave up. Check in Azure whether it happened before asking again.",
            )
        return self._attempt(row)

    def approve_in_flight(self, row: RequestRow, actor: str) -> tuple[RequestRow, str]:
        """A lead's Approve on a request already approved: if its carry-out was interrupted
        (lease ran out), resume it now rather than wait for the sweep; else say it is on."""
        ref = short_ref(row.id)
        done = self.resume(row.id, by=actor)
        if done is not None:
            return done, (
                f"Request {ref} had been interrupted while being carried out; resumed it now. "
                f"{self.outcome_text(done)}"
            )
        with self.store.transaction() as session:
            now_row = self.load(session, row.id)
        if now_row.status not in leases.IN_FLIGHT:
            return now_row, f"Request {ref} is no longer pending. {self.outcome_text(now_row)}"
        raise UserError(
            f"Request {ref} is no longer pending: it was approved by {now_row.decided_by} and "
            "is being carried out. If that is interrupted, the bot resumes it automatically "
            f"within a minute; {now_row.requester} hears the outcome."
        )

    def _attempt(self, row: RequestRow) -> RequestRow:
        """One carry-out of a request this process holds in `executing`; ends it unless
        Azure failed for a passing reason and attempts remain."""
        ws = self.config.workspaces[row.workspace]
        heartbeat = leases.Heartbeat(
            self.store,
            self.clock,
            row.id,
            self.holder,
            self.lease_length,
            self.heartbeat_every,
        )
        try:
            with heartbeat:
                result, follow_up = self._carry_out(ws, row)
        except AmlbotError as exc:
            if exc.retryable and row.attempts < self.max_attempts:
                return self._retry_later(row, exc.render())
            return self._finish_failed(row, exc.render())
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("executing request %s failed (error id %s)", row.id, error_id)
            return self._finish_failed(
                row, f"an unexpected error (error id {error_id}); quote it to a team lead"
            )
        return self._finish_succeeded(row, result, follow_up)

    def _retry_later(self, row: RequestRow, error: str) -> RequestRow:
        """Leave the request `executing` with a short lease: when it runs out, a sweep
        resumes it (one more attempt). The error is kept so the state can be explained."""
        now = self.clock.now()
        wait = self.lease_length * row.attempts
        log.warning(
            "request %s: attempt %s of %s failed for a passing reason; retried in %ss: %s",
            row.id,
            row.attempts,
            self.max_attempts,
            wait.total_seconds(),
            error,
        )
        with self.store.transaction() as session:
            session.execute(
                update(RequestRow)
                .where(
                    RequestRow.id == row.id,
                    RequestRow.status == RequestStatus.EXECUTING.value,
                    RequestRow.lease_holder == self.holder[:64],
                )
                .values(lease_until=now + wait, error=error[:2000])
                .execution_options(synchronize_session=False)
            )
            return self.load(session, row.id)

    def _plan(self, row: RequestRow, now: datetime) -> dict[str, Any] | None:
        """What a carry-out must decide once and every retry must repeat: an access grant's
        end (a PIM assignment is made with it, so a retry must ask Azure for the same)."""
        if row.action == "access":
            duration = timedelta(seconds=float(row.payload["duration_seconds"]))
            return {"planned_expires_at": (now + duration).isoformat()}
        return row.result

    def _carry_out(
        self, ws: WorkspaceConfig, row: RequestRow
    ) -> tuple[dict[str, Any], Callable[[Session, datetime], None] | None]:
        backend = self.backend_for(ws.name)
        payload = row.payload
        if row.action == "access":
            person = self.directory.person(row.requester)
            principal = (person.object_id or person.email) if person else None
            if not principal:
                raise UserError(
                    f"No Azure AD object id or e-mail is configured for {row.requester}; a "
                    f"team lead must add `object_id` for them in the configuration."
                )
            duration = timedelta(seconds=float(payload["duration_seconds"]))
            if payload.get("extends_grant") is not None:
                extended = self._extend_grant(int(payload["extends_grant"]), duration, row)
                if extended is not None:
                    return extended, None
            # The grant lasts `duration` from the moment the access exists. A PIM schedule
            # starts when it is asked for and Azure ends it at the end it was given (chosen
            # once, so a resumed request asks Azure for the same end); a plain role
            # assignment exists once the call returns, so its clock starts then.
            planned = _parse_time(str((row.result or {}).get("planned_expires_at", "")))
            asked_at = planned - duration if planned else self.clock.now()
            pim = ws.policy.access.mode == "pim"
            spec = RoleGrantSpec(
                assignment_name=assignment_name(ws.name, row.id),
                principal_object_id=principal,
                role_name=ws.policy.access.role,
                compute=payload["cluster"],
                scope=ws.policy.access.scope,
                mode=ws.policy.access.mode,
                # PIM's audit shows this as the justification: it carries the reason given.
                description=(
                    f"amlbot request #{row.id} for {row.requester}"
                    + (f': "{row.reason[:300]}"' if row.reason else "")
                    + "; "
                    + (
                        f"expires {(asked_at + duration).isoformat(timespec='minutes')}"
                        if pim
                        else f"for {format_duration(duration)}, then revoked by amlbot"
                    )
                ),
                expires_at=asked_at + duration,
            )
            receipt = backend.grant_cluster_access(spec)
            granted_at = asked_at if pim else self.clock.now()
            expires_at = granted_at + duration

            def add_grant(session: Session, now: datetime) -> None:
                session.add(
                    GrantRow(
                        request_id=row.id,
                        workspace=ws.name,
                        cluster=spec.compute,
                        grantee=row.requester,
                        principal_object_id=principal,
                        role=spec.role_name,
                        scope=spec.scope,
                        mode=spec.mode,
                        assignment_name=spec.assignment_name,
                        assignment_id=receipt.assignment_id,
                        granted_at=granted_at,
                        expires_at=expires_at,
                        status="active",
                        until_done=bool(payload.get("until_done")),
                    )
                )

            return {
                "assignment_id": receipt.assignment_id,
                "expires_at": expires_at.isoformat(),
                "note": receipt.note,
            }, add_grant
        if row.action == "datastore":
            tags = {"amlbot-request": str(row.id), "amlbot-requester": row.requester}
            try:
                info = backend.register_datastore(
                    DatastoreSpec(
                        name=payload["name"],
                        kind=DatastoreKind(payload["store_kind"]),
                        account=payload["account"],
                        container=payload["container"],
                        description=payload.get("description"),
                        tags=tags,
                    )
                )
            except ConflictError:
                # Resumed after the first attempt registered it: the datastore carries this
                # request's tag, so it is ours, and registering it is done.
                ours = [
                    d
                    for d in backend.list_datastores()
                    if d.name == payload["name"] and d.tags.items() >= tags.items()
                ]
                if not ours:
                    raise
                info = ours[0]
            return {"datastore": info.name}, None
        if row.action == "job":
            name = job_name(ws.name, row.id)
            job = backend.submit_job(
                JobSpec(
                    name=name,
                    compute=payload["compute"],
                    environment=payload["environment"],
                    command=payload["command"],
                    code=payload.get("code"),
                    inputs=payload.get("inputs") or {},
                    instance_count=int(payload.get("instances", 1)),
                    timeout_seconds=(
                        int(payload["max_duration_seconds"])
                        if payload.get("max_duration_seconds")
                        else None
                    ),
                    experiment=payload.get("experiment") or "amlbot",
                    display_name=payload.get("name") or None,
                    tags={
                        "amlbot": "true",
                        "amlbot-request": str(row.id),
                        "amlbot-requester": row.requester,
                    },
                )
            )

            def track(session: Session, now: datetime) -> None:
                session.add(
                    JobRow(
                        workspace=ws.name,
                        name=job.name,
                        request_id=row.id,
                        requester=row.requester,
                        compute=job.compute or payload["compute"],
                        status=job.status.value,
                        studio_url=job.studio_url,
                        submitted_at=now,
                        updated_at=now,
                        following=True,
                    )
                )

            return {
                "job": job.name,
                "status": job.status.value,
                "studio_url": job.studio_url,
            }, track
        if row.action == "compute":
            operation = payload["operation"]
            if operation == "stop_instance":
                backend.stop_instance(payload["compute"])
            elif operation == "set_min_nodes":
                backend.set_cluster_min_nodes(payload["compute"], int(payload["min_nodes"]))
            elif operation == "set_idle_time":
                backend.set_cluster_idle_time(payload["compute"], int(payload["idle_seconds"]))
            elif operation == "set_idle_shutdown":
                backend.set_instance_idle_shutdown(
                    payload["compute"], int(payload["idle_shutdown_minutes"])
                )
            else:
                raise UserError(f"unknown compute operation {operation!r}")
            return {"operation": operation, "compute": payload["compute"]}, None
        raise UserError(f"unknown action {row.action!r}")

    def _extend_grant(
        self, grant_id: int, duration: timedelta, row: RequestRow
    ) -> dict[str, Any] | None:
        """Push an active grant's expiry out instead of making a second role assignment
        (Azure refuses a second one for the same person, role and scope). None if the grant
        ended meanwhile: then a fresh grant is made."""
        now = self.clock.now()
        done = row.result or {}
        if done.get("extended_grant") == grant_id:
            # Extended before this process was interrupted: pushing it out again on the
            # retry would give the time twice.
            return dict(done)
        with self.store.transaction() as session:
            grant = session.get(GrantRow, grant_id)
            if grant is None or grant.status != "active" or grant.grantee != row.requester:
                return None
            if grant.mode == "pim" and grant.expires_at <= now:
                return None  # Azure ended the PIM assignment at its expiry: nothing to extend
            # A PIM grant's expiry is still ahead here, so its new end derives from the stored
            # expiry alone: a retry before the row below is updated asks Azure for the same
            # end, under the same request name, and extends nothing twice.
            new_expiry = max(grant.expires_at, now) + duration
        spec = spec_of_grant(
            grant,
            f"amlbot request #{row.id} for {row.requester} extends grant #{grant.id}; "
            f"expires {new_expiry.isoformat(timespec='minutes')}",
        )
        # Outside any transaction: for PIM this is a schedule request to Azure, which ends
        # the assignment itself and must hear of the new end.
        self.backend_for(grant.workspace).extend_cluster_access(spec, new_expiry)
        with self.store.transaction() as session:
            extended = session.execute(
                update(GrantRow)
                .where(GrantRow.id == grant_id, GrantRow.status == "active")
                .values(expires_at=new_expiry, warned_at=None)
                .execution_options(synchronize_session=False)
            )
            if getattr(extended, "rowcount", 0) != 1:
                # Revoked (by its holder, a lead or the expiry sweep) during the call: the
                # revocation wins, and the person must not be told they have access.
                raise UserError(
                    f"Grant {short_ref(grant_id)} was revoked while it was being extended, so "
                    "it was not extended. Ask for access again."
                )
            result = {
                "assignment_id": grant.assignment_id,
                "expires_at": new_expiry.isoformat(),
                "extended_grant": grant_id,
            }
            # Recorded with the new expiry, so a retry after an interruption finds it done.
            session.execute(
                update(RequestRow)
                .where(RequestRow.id == row.id)
                .values(result=result)
                .execution_options(synchronize_session=False)
            )
        return result

    def _finish_succeeded(
        self,
        row: RequestRow,
        result: dict[str, Any],
        follow_up: Callable[[Session, datetime], None] | None,
    ) -> RequestRow:
        now = self.clock.now()
        with self.store.transaction() as session:
            if not transition(
                session,
                row.id,
                RequestStatus.EXECUTING,
                RequestStatus.SUCCEEDED,
                result=result,
                error=None,
                finished_at=now,
                **leases.released(),
            ):
                # Another process finished it first (it resumed this one, thinking it dead):
                # that one recorded the outcome and told everyone.
                return self.load(session, row.id)
            if follow_up is not None:
                follow_up(session, now)
            audit.record(
                session,
                at=now,
                actor="amlbot",
                action=f"{row.action}.executed",
                outcome="succeeded",
                workspace=row.workspace,
                target=short_ref(row.id),
                **{k: v for k, v in result.items() if k != "note"},
            )
            done = self.load(session, row.id)
            self._announce(session, done, now)
            return done

    def _finish_failed(self, row: RequestRow, error: str) -> RequestRow:
        now = self.clock.now()
        with self.store.transaction() as session:
            if not transition(
                session,
                row.id,
                RequestStatus.EXECUTING,
                RequestStatus.FAILED,
                error=error[:2000],
                finished_at=now,
                **leases.released(),
            ):
                return self.load(session, row.id)
            audit.record(
                session,
                at=now,
                actor="amlbot",
                action=f"{row.action}.executed",
                outcome="failed",
                workspace=row.workspace,
                target=short_ref(row.id),
                error=error[:500],
            )
            done = self.load(session, row.id)
            self._announce(session, done, now)
            return done

    def _announce(self, session: Session, done: RequestRow, now: datetime) -> None:
        """The outcome, queued in the transaction that ended the request (so exactly once).
        A lead decided it: a card exists and the asker waits. Policy ran it at once: the
        asker read the outcome in the reply, unless the first attempt did not finish it
        (interrupted, or retried later), so the reply promised to tell them."""
        if done.approvals_needed:
            outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": done.id}, now=now)
        if done.approvals_needed or done.attempts > 1:
            outbox.notify_person(
                session, done.requester, self.outcome_text(done), now=now, request_id=done.id
            )

    def outcome_text(self, row: RequestRow) -> str:
        ref = short_ref(row.id)
        if row.status == RequestStatus.FAILED:
            return f"Request {ref} ({row.summary}) failed: {row.error}"
        if row.status in leases.IN_FLIGHT:
            tried = (
                f" The last try failed ({row.error}); it is retried shortly." if row.error else ""
            )
            return (
                f"Request {ref} is being carried out.{tried} If it is interrupted, the bot "
                f"resumes it automatically; {row.requester} hears the outcome."
            )
        if row.status != RequestStatus.SUCCEEDED:
            return f"Request {ref} is {row.status}."
        result = row.result or {}
        if row.action == "access":
            expires = result.get("expires_at", "")
            until = f"until {when(_parse_time(expires))}"
            if row.payload.get("until_done") and not result.get("extended_grant"):
                until = f"until the work there is done (at the latest {when(_parse_time(expires))})"
            return (
                f"Request {ref} done: {row.requester} has access to "
                f"`{row.payload['cluster']}` {until}. {PROPAGATION_NOTE}"
            )
        if row.action == "datastore":
            return (
                f"Request {ref} done: datastore `{result.get('datastore')}` is registered "
                f"(identity-based, no secret stored)."
            )
        if row.action == "job":
            link = f"\nStudio: {result['studio_url']}" if result.get("studio_url") else ""
            return (
                f"Job `{result.get('job')}` submitted on `{row.payload['compute']}` "
                f"(status {result.get('status')}). Follow it with "
                f"`/aml job status {result.get('job')}`.{link}"
            )
        return f"Request {ref} done: {row.summary}."


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def spec_of_grant(grant: GrantRow, description: str) -> RoleGrantSpec:
    """The role assignment a recorded grant stands for, as the workspace port takes it."""
    return RoleGrantSpec(
        assignment_name=grant.assignment_name,
        principal_object_id=grant.principal_object_id,
        role_name=grant.role,
        compute=grant.cluster,
        scope=grant.scope,
        mode=grant.mode,
        description=description,
        expires_at=grant.expires_at,
    )
