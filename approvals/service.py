"""The core every edge calls: a person and a command in, a reply out.

Slack, the console and tests all go through `AmlService.handle_text` (or `run` with an
already parsed command, e.g. from a button or a modal), so they behave the same.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from approvals.drift import check_workspace, fix_request, settle_finding
from approvals.idle.actions import request_compute_change
from approvals.idle.digest import idle_report
from approvals.leases import IN_FLIGHT
from approvals.replies import Reply
from approvals.service_asks import AskCommands
from approvals.service_jobs import JobCommands
from approvals.service_queries import QueryCommands
from approvals.states import RequestStatus
from approvals.tables import GrantRow, RequestRow
from approvals.wording import (
    revocation_done,
    short_ref,
)
from commands import models as m
from commands.help import help_text
from commands.parser import parse_command
from shared.errors import (
    AmlbotError,
    NotFoundUserError,
    PermissionRefusedError,
    SecretRefusedError,
    UserError,
    secret_refusal,
)

log = logging.getLogger(__name__)


class AmlService(JobCommands, QueryCommands, AskCommands):
    """Dispatches each command to its handler: deciding, revoking, and the idle and drift
    commands live here; asking for something, jobs and queries in the bases."""

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
        if row.status in IN_FLIGHT:
            # "You will hear the outcome": whoever ends it must then say it, though policy
            # ran it (whose first reply would have carried the outcome).
            row = self.workflow.owe_outcome(row.id)
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
        m.AccessRequest: AskCommands._access_request,
        m.AccessList: QueryCommands._access_list,
        m.AccessRevoke: _access_revoke,
        m.DatastoreRegister: AskCommands._datastore_register,
        m.DatastoreList: QueryCommands._datastore_list,
        m.JobSubmit: AskCommands._job_submit,
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
