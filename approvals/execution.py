"""Carrying out an approved request exactly once, and recovering from a crash mid-way.

Calls to the workspace happen between transactions, never inside one, so a slow Azure
call holds no database lock. Names of what is made in Azure derive from the request, so a
retry cannot make a second role assignment or job.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import audit, outbox
from approvals.config import WorkspaceConfig
from approvals.render import short_ref, when
from approvals.states import RequestStatus, transition
from approvals.tables import GrantRow, JobRow, RequestRow
from approvals.workflow_base import WorkflowBase
from commands.errors import UserError
from workspaces.errors import WorkspaceError
from workspaces.types import DatastoreKind, DatastoreSpec, JobSpec, RoleGrantSpec

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
    def execute(self, request_id: int) -> RequestRow:
        """Carry out an approved request exactly once: only the caller that moves it to
        `executing` acts; everyone else sees the state it is in."""
        now = self.clock.now()
        with self.store.transaction() as session:
            row = self.load(session, request_id)
            won = transition(session, row.id, RequestStatus.APPROVED, RequestStatus.EXECUTING)
            if won:
                outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
        if not won:
            with self.store.transaction() as session:
                return self.load(session, request_id)
        ws = self.config.workspaces[row.workspace]
        try:
            result, follow_up = self._carry_out(ws, row)
        except (WorkspaceError, UserError) as exc:
            return self._finish_failed(row, str(exc))
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("executing request %s failed (error id %s)", row.id, error_id)
            return self._finish_failed(
                row, f"an unexpected error (error id {error_id}); nothing else was changed"
            )
        return self._finish_succeeded(row, result, follow_up)

    def recover_interrupted(self, older_than: timedelta = timedelta(minutes=15)) -> list[int]:
        """Finish requests a crash left `approved` or `executing` (the process died between
        two transactions). Names derived from the request make the retry idempotent in Azure.
        Each is claimed by bumping its version, so two replicas never both retry it."""
        from sqlalchemy import update

        cutoff = self.clock.now() - older_than
        with self.store.transaction() as session:
            stalled = list(
                session.execute(
                    select(RequestRow.id, RequestRow.status, RequestRow.version).where(
                        RequestRow.status.in_(
                            [RequestStatus.APPROVED.value, RequestStatus.EXECUTING.value]
                        ),
                        RequestRow.decided_at <= cutoff,
                    )
                )
            )
        recovered = []
        for request_id, status, version in stalled:
            if status == RequestStatus.APPROVED:
                self.execute(request_id)
                recovered.append(request_id)
                continue
            with self.store.transaction() as session:
                claimed = session.execute(
                    update(RequestRow)
                    .where(RequestRow.id == request_id, RequestRow.version == version)
                    .values(version=RequestRow.version + 1, decided_at=self.clock.now())
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) != 1:
                    continue
                row = self.load(session, request_id)
            log.warning("retrying request %s left executing by an interrupted process", row.id)
            ws = self.config.workspaces[row.workspace]
            try:
                result, follow_up = self._carry_out(ws, row)
            except (WorkspaceError, UserError) as exc:
                self._finish_failed(row, str(exc))
            else:
                self._finish_succeeded(row, result, follow_up)
            recovered.append(request_id)
        return recovered

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
            expires_at = self.clock.now() + duration
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
                    + f"; expires {expires_at.isoformat(timespec='minutes')}"
                ),
                expires_at=expires_at,
            )
            receipt = backend.grant_cluster_access(spec)

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
                        granted_at=now,
                        expires_at=expires_at,
                        status="active",
                    )
                )

            return {
                "assignment_id": receipt.assignment_id,
                "expires_at": expires_at.isoformat(),
                "note": receipt.note,
            }, add_grant
        if row.action == "datastore":
            info = backend.register_datastore(
                DatastoreSpec(
                    name=payload["name"],
                    kind=DatastoreKind(payload["store_kind"]),
                    account=payload["account"],
                    container=payload["container"],
                    description=payload.get("description"),
                    tags={"amlbot-request": str(row.id), "amlbot-requester": row.requester},
                )
            )
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
        from sqlalchemy import update

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
            transition(
                session,
                row.id,
                RequestStatus.EXECUTING,
                RequestStatus.SUCCEEDED,
                result=result,
                finished_at=now,
            )
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
            if row.approvals_needed:  # decided by a lead: a card exists and the asker waits
                outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
                outbox.notify_person(
                    session, row.requester, self.outcome_text(done), now=now, request_id=row.id
                )
            return done

    def _finish_failed(self, row: RequestRow, error: str) -> RequestRow:
        now = self.clock.now()
        with self.store.transaction() as session:
            transition(
                session,
                row.id,
                RequestStatus.EXECUTING,
                RequestStatus.FAILED,
                error=error[:2000],
                finished_at=now,
            )
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
            if row.approvals_needed:
                outbox.enqueue(session, outbox.REQUEST_UPDATED, {"request_id": row.id}, now=now)
                outbox.notify_person(
                    session, row.requester, self.outcome_text(done), now=now, request_id=row.id
                )
            return done

    def outcome_text(self, row: RequestRow) -> str:
        ref = short_ref(row.id)
        if row.status == RequestStatus.FAILED:
            return f"Request {ref} ({row.summary}) failed: {row.error}"
        if row.status != RequestStatus.SUCCEEDED:
            return f"Request {ref} is {row.status}."
        result = row.result or {}
        if row.action == "access":
            expires = result.get("expires_at", "")
            return (
                f"Request {ref} done: {row.requester} has access to "
                f"`{row.payload['cluster']}` until {when(_parse_time(expires))}. "
                f"{PROPAGATION_NOTE}"
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
