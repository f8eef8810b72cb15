"""The commands that ask for something: access to a cluster (or break-glass access), a
datastore, a job. Policy, or a risk rule, decides each: carried out at once, or opened as a
request that waits for a lead; the reply says which (for access and jobs, with the
estimated cost).
"""

from __future__ import annotations

from datetime import timedelta

from approvals.break_glass import break_glass_duration
from approvals.config import WorkspaceConfig
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
from approvals.service_risk import Assessment, RiskCommands
from approvals.states import RequestStatus
from approvals.tables import RequestRow
from approvals.wording import short_ref, when
from commands import models as m
from commands.durations import format_duration
from shared.errors import UsageError, UserError


class AskCommands(RiskCommands):
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
        two = row.approvals_needed >= 2
        if group:
            who = f"two members of group `{group}`" if two else f"group `{group}`"
        else:
            leads = ", ".join(lead for lead in ws.team_leads if lead != row.requester)
            who = f"{'two team leads' if two else 'a team lead'} of `{ws.name}` ({leads})"
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
        if outcome is not None and (may_use or outcome.decide in ("two_leads", "refuse")):
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


def _fmt(duration: timedelta) -> str:
    return format_duration(duration)
