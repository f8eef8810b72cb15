"""The core every edge calls: a person and a command in, a reply out.

Slack, the console and tests all go through `AmlService.handle_text` (or `run` with an
already parsed command, e.g. from a button or a modal), so they behave the same.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from approvals.break_glass import break_glass_duration
from approvals.config import WorkspaceConfig
from approvals.drift import check_workspace, fix_request, settle_finding
from approvals.idle.actions import request_compute_change
from approvals.idle.digest import idle_report
from approvals.payloads import AccessPayload, DatastorePayload, JobPayload, rule_of
from approvals.policy import (
    asked_access_duration,
    decide_access,
    decide_datastore,
    decide_job,
    job_limit,
    require_cluster,
    workspace_flag,
)
from approvals.replies import Reply
from approvals.service_jobs import JobCommands
from approvals.service_queries import QueryCommands
from approvals.service_risk import Assessment, RiskCommands
from approvals.states import RequestStatus
from approvals.tables import GrantRow, RequestRow
from approvals.wording import (
    revocation_done,
    short_ref,
    when,
)
from commands import models as m
from commands.durations import format_duration
from commands.help import help_text
from commands.parser import parse_command
from shared.errors import (
    AmlbotError,
    NotFoundUserError,
    PermissionRefusedError,
    SecretRefusedError,
    UsageError,
    UserError,
    secret_refusal,
)

log = logging.getLogger(__name__)


class AmlService(JobCommands, QueryCommands, RiskCommands):
    """Dispatches each command to its handler; mutating ones live here, the rest in the bases."""

    # ---- entry points -----------------------------------------------------------------

    def handle_text(self, person: str, text: str, channel: str | None = None) -> Reply:
        """Parse and run one `/aml` line for a known person. Never raises."""
        try:
            command = parse_command(text)  # looks for secrets before anything else
        except SecretRefusedError as exc:
            # The text itself is neither stored, logged nor audited: only that it happened.
            self._audit_secret_refusal(person, exc.kind)
            return Reply(text=exc.render(), ok=False)
        except UserError as exc:
            return Reply(text=exc.render(), ok=False)
        # Its kind goes with the reply: the edges count commands by it without parsing the
        # text a second time.
        return self.run(person, command, channel).model_copy(update={"command": command.kind})

    def run(self, person: str, command: m.AnyCommand, channel: str | None = None) -> Reply:
        """Run a parsed command. The one error boundary: known errors become their message,
        anything else an error id the person can quote, with the trace in the log."""
        try:
            # Whatever edge built the command (typed text, a modal, a button), a secret in
            # any of its fields goes no further; `parse_command` only covers typed text.
            self.workflow.refuse_secrets(person, command)
            again = self.workflow.opened_by_delivery()
            if again is not None:
                return self._answer_again(again)
            handler = self._handlers[type(command)]
            return handler(self, person, command, channel)
        except AmlbotError as exc:  # a secret refused here was audited by the gate
            return Reply(text=exc.render(), ok=False)
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("command %s by %s failed (error id %s)", command.kind, person, error_id)
            return Reply(
                text=(
                    f"Something went wrong on our side (error id `{error_id}`); nothing was "
                    f"changed. Try again, and quote the error id to your team lead if it lasts."
                ),
                ok=False,
                error_id=error_id,
            )

    def _answer_again(self, row: RequestRow) -> Reply:
        """The answer to a command handled a second time (its first handling died before it
        was marked done): the request it opened then, as it stands, not a second one."""
        if row.status == RequestStatus.PENDING:
            return self._pending_reply(self.config.workspaces[row.workspace], row)
        return Reply(
            text=self.workflow.outcome_text(row),
            ok=row.status != RequestStatus.FAILED,
            request_id=row.id,
        )

    def unknown_person(self) -> Reply:
        return Reply(
            text=(
                "I don't know you yet. Ask a team lead to add you (your Slack user id or "
                "e-mail) to a workspace in the amlbot configuration."
            ),
            ok=False,
        )

    def refuse_secret(self, person: str, kind: str) -> Reply:
        """The answer to a message an edge found a secret in (and withheld): the refusal,
        audited like a typed one, with no text kept."""
        self._audit_secret_refusal(person, kind)
        return Reply(text=secret_refusal(kind).render(), ok=False)

    def _audit_secret_refusal(self, person: str, kind: str) -> None:
        self.workflow.audit_secret_refusal(person, kind)

    # ---- handlers ---------------------------------------------------------------------

    def _help(self, person: str, command: m.Help, channel: str | None) -> Reply:
        return Reply(text=help_text(command.topic))

    def _access_request(self, person: str, command: m.AccessRequest, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        cluster = require_cluster(ws, command.cluster, self._must_name_workspace(person, command))
        if command.emergency:
            return self._break_glass(person, ws, cluster.name, command)
        until_done = command.until_done or cluster.until_done
        duration = asked_access_duration(ws, cluster, command)
        existing = self._active_grant(person, ws.name, cluster.name)
        extending = existing is not None and (
            existing.expires_at - self.clock.now() <= ws.policy.grant_expiry_warning
        )
        if existing is not None and not extending:
            raise UserError(
                f"You already have access to `{cluster.name}` until {when(existing.expires_at)} "
                f"(grant {short_ref(existing.id)})."
            )
        pending = self._pending_like(
            person,
            ws.name,
            lambda asked: isinstance(asked, AccessPayload) and asked.cluster == cluster.name,
        )
        if pending is not None:
            raise UserError(
                f"You already asked for `{cluster.name}`: request {short_ref(pending)} is waiting "
                f"for a team lead. See `/aml request show {pending}`."
            )
        assessment = self.assess_access(ws, person, cluster, duration)
        if assessment.outcome is not None:
            decision = self.rule_decision(ws, person, assessment.outcome)
        else:
            decision = decide_access(ws, person)
        summary = f"access to {cluster.name} for {_fmt(duration)}"
        if until_done:
            summary = (
                f"access to {cluster.name} until the work there is done (at most {_fmt(duration)})"
            )
        extends = existing.id if extending and existing is not None else None
        if extends is not None:
            summary = f"extend access to {cluster.name} by {_fmt(duration)}"
        payload = AccessPayload(
            cluster=cluster.name,
            duration_seconds=duration.total_seconds(),
            until_done=until_done,
            extends_grant=extends,
            **assessment.kept_facts(ws).model_dump(),
        )
        if decision.run_now:
            row = self.workflow.run_now(ws, person, payload, summary, decision.why, decision.rule)
            return self._auto_reply(row, decision.why)
        row = self.workflow.open_request(
            ws, person, payload, summary, command.reason, decision.approvals_needed
        )
        return self._pending_reply(ws, row, assessment)

    def _break_glass(
        self, person: str, ws: WorkspaceConfig, cluster: str, command: m.AccessRequest
    ) -> Reply:
        duration = break_glass_duration(ws, person, command.duration)
        existing = self._active_grant(person, ws.name, cluster)
        if existing is not None:
            raise UserError(
                f"You already have access to `{cluster}` until {when(existing.expires_at)} "
                f"(grant {short_ref(existing.id)}); break-glass is not needed."
            )
        access, review = self.workflow.break_glass(ws, person, cluster, duration, command.reason)
        outcome = self.workflow.outcome_text(access)
        if access.status != RequestStatus.SUCCEEDED:
            return Reply(text=outcome, ok=False, request_id=access.id)
        return Reply(
            text=(
                f"Break-glass: {outcome} Every team lead of `{ws.name}` has been told, and one "
                f"must review this use afterwards (request {short_ref(review.id)})."
            ),
            request_id=access.id,
        )

    def _auto_reply(self, row: RequestRow, why: str) -> Reply:
        return Reply(
            text=f"{why[:1].upper()}{why[1:]}. {self.workflow.outcome_text(row)}",
            ok=row.status == RequestStatus.SUCCEEDED,
            request_id=row.id,
        )

    def _pending_reply(
        self, ws: WorkspaceConfig, row: RequestRow, assessment: Assessment | None = None
    ) -> Reply:
        rule = rule_of(row.payload)
        group = rule.approvers if rule is not None else None
        if group:
            who = f"group `{group}`"
        else:
            leads = ", ".join(lead for lead in ws.team_leads if lead != row.requester)
            who = f"a team lead of `{ws.name}` ({leads})"
        text = (
            f"Request {short_ref(row.id)} ({row.summary}) is waiting for {who}. You'll hear "
            f"back here when it is decided; it expires {when(row.expires_at)}. Withdraw it "
            f"with `/aml request cancel {row.id}`."
        )
        if assessment is not None:
            if assessment.outcome is not None:
                text += f"\nPolicy: {assessment.outcome.headline()}."
            text += f"\nEst. cost: {assessment.estimate_text()}."
        return Reply(text=text, request_id=row.id)

    def _access_revoke(self, person: str, command: m.AccessRevoke, channel: str | None) -> Reply:
        with self.store.transaction() as session:
            grant = session.get(GrantRow, command.grant_id)
        if grant is None:
            raise NotFoundUserError(
                f"There is no grant {short_ref(command.grant_id)}.", example="/aml access list"
            )
        if grant.grantee != person and not self.directory.is_lead(person, grant.workspace):
            raise PermissionRefusedError(
                f"Only {grant.grantee} or a team lead of `{grant.workspace}` can revoke grant "
                f"{short_ref(grant.id)}."
            )
        reason = "given up by the grantee" if grant.grantee == person else f"revoked by {person}"
        self.workflow.revoke_grant(grant.id, person, reason=reason)
        return Reply(
            text=(
                f"Grant {short_ref(grant.id)} ({grant.grantee} on `{grant.cluster}`) is revoked "
                f"in Azure; {revocation_done(grant.mode)}. Azure can take up to about 10 "
                f"minutes to stop honouring it everywhere."
            )
        )

    def _datastore_register(
        self, person: str, command: m.DatastoreRegister, channel: str | None
    ) -> Reply:
        ws = self._workspace(person, command, channel)
        existing = {d.name for d in self.backend_for(ws.name).list_datastores()}
        if command.name in existing:
            raise UsageError(
                f"Workspace `{ws.name}` already has a datastore named `{command.name}`; pick "
                f"another name, or use it as `azureml://datastores/{command.name}/paths/...`.",
                field="NAME",
                example=f"/aml datastore register {command.name}2"
                f"{workspace_flag(ws, self._must_name_workspace(person, command))} "
                f"--kind {command.store_kind} --account {command.account} "
                f"--container {command.container}",
            )
        pending = self._pending_like(
            person,
            ws.name,
            lambda asked: isinstance(asked, DatastorePayload) and asked.name == command.name,
        )
        if pending is not None:
            raise UserError(
                f"You already asked for `{command.name}`: request {short_ref(pending)}."
            )
        payload = DatastorePayload(
            name=command.name,
            store_kind=command.store_kind,
            account=command.account,
            container=command.container,
            description=command.description,
        )
        summary = (
            f"register {command.store_kind} datastore {command.name} "
            f"({command.account}/{command.container})"
        )
        decision = decide_datastore(ws, person)
        if decision.run_now:
            row = self.workflow.run_now(ws, person, payload, summary, decision.why)
            return Reply(
                text=self.workflow.outcome_text(row), ok=row.status == RequestStatus.SUCCEEDED
            )
        row = self.workflow.open_request(
            ws,
            person,
            payload,
            summary,
            command.description,
            decision.approvals_needed,
        )
        return self._pending_reply(ws, row)

    def _job_submit(self, person: str, command: m.JobSubmit, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        named = self._must_name_workspace(person, command)
        cluster = require_cluster(ws, command.compute, named)
        has_grant = self._active_grant(person, ws.name, cluster.name) is not None
        limit = job_limit(ws, command.max_duration)
        decision = decide_job(ws, person, cluster, command.instances, has_grant, named)
        assessment = self.assess_job(ws, person, cluster, command.instances, limit)
        # Rules decide jobs of people who may use the cluster; without access the built-in
        # policy has already refused or asked a lead, and a rule may only ask for more.
        may_use = has_grant or person in ws.team_leads or not cluster.requires_grant
        outcome = assessment.outcome
        if outcome is not None and (may_use or outcome.rule.decide in ("two_leads", "refuse")):
            decision = self.rule_decision(ws, person, outcome)
        reason = f"needs approval: {decision.why}"
        # Approved as this job alone: the bot submits it; no role assignment is made.
        job_alone = (
            not decision.run_now
            and not has_grant
            and cluster.requires_grant
            and person not in ws.team_leads
        )
        if job_alone:
            reason += "; approving runs this one job only and grants no access to the cluster"
        payload = JobPayload(
            compute=command.compute,
            environment=command.environment,
            command=command.command,
            code=command.code,
            inputs=command.inputs,
            instances=command.instances,
            max_duration_seconds=limit.total_seconds() if limit is not None else None,
            experiment=command.experiment,
            name=command.name,
            job_alone=job_alone,
            **assessment.kept_facts(ws).model_dump(),
        )
        summary = f"job `{command.command[:80]}` on {cluster.name} x{command.instances}"
        if decision.run_now:
            row = self.workflow.run_now(ws, person, payload, summary, decision.why, decision.rule)
            if decision.rule is not None:
                return self._auto_reply(row, decision.why)
            return Reply(
                text=self.workflow.outcome_text(row)
                + f"\nEst. cost: {assessment.estimate_text()}.",
                ok=row.status == RequestStatus.SUCCEEDED,
                request_id=row.id,
            )
        row = self.workflow.open_request(
            ws, person, payload, summary, reason, decision.approvals_needed
        )
        return self._pending_reply(ws, row, assessment)

    def _request_cancel(self, person: str, command: m.RequestCancel, channel: str | None) -> Reply:
        row = self.workflow.cancel(command.request_id, person)
        return Reply(text=f"Request {short_ref(row.id)} is cancelled.", request_id=row.id)

    def _approve(self, person: str, command: m.Approve, channel: str | None) -> Reply:
        row, message = self.workflow.approve(command.request_id, person)
        return Reply(text=message, ok=row.status != RequestStatus.FAILED, request_id=row.id)

    def _deny(self, person: str, command: m.Deny, channel: str | None) -> Reply:
        row = self.workflow.deny(command.request_id, person, command.reason)
        return Reply(
            text=f"Denied {short_ref(row.id)}; {row.requester} is told why.", request_id=row.id
        )

    def _idle(self, person: str, command: m.IdleReport, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        return Reply(text=idle_report(self.backend_for, self.store, self.clock, ws))

    def _compute_change(self, person: str, command: m.ComputeChange, channel: str | None) -> Reply:
        return request_compute_change(self.workflow, self.config, person, command)

    def _drift_check(self, person: str, command: m.DriftCheck, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        if person not in ws.team_leads:
            raise PermissionRefusedError(f"Only team leads of `{ws.name}` can run a drift check.")
        report = check_workspace(self.store, ws, self.backend_for(ws.name), self.clock.now())
        if report is None:
            return Reply(text=f"No drift in `{ws.name}`: Azure matches the bot's records.")
        return Reply(text=f"Drift found in `{ws.name}`; the report went to its team leads.")

    def _drift_fix(self, person: str, command: m.DriftFix, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        finding, payload, summary = fix_request(self.store, ws, command.finding_id, person)
        # A lead's fix runs at once, recorded and audited as a request like any other.
        row = self.workflow.run_now(
            ws, person, payload, summary, "a team lead fixes a drift finding"
        )
        settle_finding(self.store, finding.id, row.id, row.status)
        return Reply(
            text=self.workflow.outcome_text(row),
            ok=row.status == RequestStatus.SUCCEEDED,
            request_id=row.id,
        )

    _handlers: dict[type[Any], Callable[..., Reply]] = {
        m.Help: _help,
        m.WhoAmI: QueryCommands._whoami,
        m.ComputeList: QueryCommands._compute_list,
        m.AccessRequest: _access_request,
        m.AccessList: QueryCommands._access_list,
        m.AccessRevoke: _access_revoke,
        m.DatastoreRegister: _datastore_register,
        m.DatastoreList: QueryCommands._datastore_list,
        m.JobSubmit: _job_submit,
        m.JobStatusQuery: JobCommands._job_status,
        m.JobList: JobCommands._job_list,
        m.JobCancel: JobCommands._job_cancel,
        m.JobWatch: JobCommands._job_watch,
        m.JobUnwatch: JobCommands._job_unwatch,
        m.RequestList: QueryCommands._request_list,
        m.RequestShow: QueryCommands._request_show,
        m.RequestCancel: _request_cancel,
        m.Approve: _approve,
        m.Deny: _deny,
        m.Audit: QueryCommands._audit,
        m.IdleReport: _idle,
        m.ComputeChange: _compute_change,
        m.DriftCheck: _drift_check,
        m.DriftFix: _drift_fix,
    }


def _fmt(duration: timedelta) -> str:
    return format_duration(duration)
