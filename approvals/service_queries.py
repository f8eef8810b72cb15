"""Commands that only show things: who am I, compute, grants, datastores, requests, audit."""

from __future__ import annotations

from sqlalchemy import select

from approvals import audit
from approvals.decision_rights import not_yours
from approvals.replies import Reply
from approvals.service_base import ServiceBase
from approvals.states import RequestStatus
from approvals.tables import AuditRow, GrantRow, GrantStatus, RequestRow
from approvals.wording import (
    describe_grant,
    describe_request,
    short_ref,
    status_line,
    when,
)
from commands import models as m
from shared.errors import (
    PermissionRefusedError,
)
from workspaces.prices import estimate, price_for, price_note
from workspaces.types import Priority


class QueryCommands(ServiceBase):
    def _whoami(self, person: str, command: m.WhoAmI, channel: str | None) -> Reply:
        info = self.directory.person(person)
        lines = [f"You are *{person}*."]
        if info and info.slack_id:
            lines.append(f"Slack user id: `{info.slack_id}`")
        if info and info.object_id:
            lines.append(f"Azure AD object id: `{info.object_id}`")
        for ws in self.directory.workspaces_of(person):
            role = "team lead" if person in ws.team_leads else "data scientist"
            lines.append(f"Workspace `{ws.name}` ({ws.azure.workspace_name}): {role}")
        now = self.clock.now()
        with self.store.transaction() as session:
            grants = session.scalars(
                select(GrantRow).where(
                    GrantRow.grantee == person, GrantRow.status == GrantStatus.ACTIVE
                )
            ).all()
            for grant in grants:
                lines.append("Active " + describe_grant(grant, now))
        return Reply(text="\n".join(lines))

    def _compute_list(self, person: str, command: m.ComputeList, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        inventory = self.backend_for(ws.name).list_computes()
        lines = [f"*Compute in `{ws.name}`*"]
        quotes = []
        for cluster in inventory.clusters:
            low = cluster.priority == Priority.LOW_PRIORITY
            quote = price_for(cluster.vm_size, ws.region, low_priority=low)
            quotes.append(quote)
            price = None if quote is None else quote.usd_per_hour
            states = ", ".join(
                f"{k} {v}" for k, v in sorted(cluster.node_state_counts.items()) if v
            )
            configured = ws.cluster(cluster.name)
            access = (
                "open to all members"
                if configured is not None and not configured.requires_grant
                else "needs an access grant"
            )
            lines.append(
                f"• cluster `{cluster.name}`: {cluster.vm_size}, "
                f"{'low priority' if low else 'dedicated'}, nodes {cluster.current_nodes} up "
                f"(min {cluster.min_nodes}, max {cluster.max_nodes})"
                + (f" [{states}]" if states else "")
                + f", {estimate(price, 'node-hour')}, {access}"
            )
        for instance in inventory.instances:
            owner = f", assigned to {instance.assigned_user}" if instance.assigned_user else ""
            lines.append(
                f"• instance `{instance.name}`: {instance.vm_size}, {instance.state}{owner}"
            )
        for name, kind in sorted(inventory.others.items()):
            lines.append(f"• {kind} `{name}`")
        if len(lines) == 1:
            lines.append("No compute yet.")
        elif quotes:
            lines.append(price_note(quotes))
        return Reply(text="\n".join(lines))

    def _access_list(self, person: str, command: m.AccessList, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        is_lead = self.directory.is_lead(person, ws.name)
        now = self.clock.now()
        with self.store.transaction() as session:
            statement = select(GrantRow).where(
                GrantRow.workspace == ws.name,
                GrantRow.status.in_([GrantStatus.ACTIVE, GrantStatus.REVOKING]),
            )
            if not is_lead:
                statement = statement.where(GrantRow.grantee == person)
            grants = session.scalars(statement.order_by(GrantRow.expires_at)).all()
        whose = "All active grants" if is_lead else "Your active grants"
        if not grants:
            return Reply(text=f"{whose} in `{ws.name}`: none.")
        lines = [f"*{whose} in `{ws.name}`*"] + [f"• {describe_grant(g, now)}" for g in grants]
        return Reply(text="\n".join(lines))

    def _datastore_list(self, person: str, command: m.DatastoreList, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        stores = self.backend_for(ws.name).list_datastores()
        lines = [f"*Datastores in `{ws.name}`*"]
        for store in stores:
            where = f"{store.account}/{store.container}" if store.account else "-"
            default = " (default)" if store.is_default else ""
            lines.append(f"• `{store.name}`{default}: {store.kind}, {where}, {store.credentials}")
        return Reply(text="\n".join(lines))

    def _request_list(self, person: str, command: m.RequestList, channel: str | None) -> Reply:
        lead_of = [
            ws.name for ws in self.directory.workspaces_of(person) if person in ws.team_leads
        ]
        with self.store.transaction() as session:
            mine = session.scalars(
                select(RequestRow)
                .where(RequestRow.requester == person)
                .order_by(RequestRow.id.desc())
                .limit(10)
            ).all()
            waiting = (
                session.scalars(
                    select(RequestRow)
                    .where(
                        RequestRow.workspace.in_(lead_of),
                        RequestRow.status == RequestStatus.PENDING,
                        RequestRow.requester != person,
                    )
                    .order_by(RequestRow.id)
                ).all()
                if lead_of
                else []
            )
        lines = []
        if waiting:
            lines.append("*Waiting for you to decide*")
            lines += [
                f"• {short_ref(r.id)} {r.requester}: {r.summary} "
                f'(`/aml approve {r.id}` or `/aml deny {r.id} --reason "..."`)'
                for r in waiting
            ]
        lines.append("*Your recent requests*" if mine else "You have made no requests yet.")
        lines += [f"• {short_ref(r.id)} {r.summary}: {status_line(r)}" for r in mine]
        return Reply(text="\n".join(lines))

    def _request_show(self, person: str, command: m.RequestShow, channel: str | None) -> Reply:
        row = self._load_request(command.request_id)
        if not self.workflow.may_see(person, row):
            raise PermissionRefusedError(not_yours(row.id))
        if row.requester != person and not self.directory.is_lead(person, row.workspace):
            raise PermissionRefusedError(
                f"Request {short_ref(row.id)} is visible to {row.requester} and the team leads "
                f"of `{row.workspace}` only."
            )
        return Reply(text=describe_request(row, self.config).as_text(), request_id=row.id)

    def _audit(self, person: str, command: m.Audit, channel: str | None) -> Reply:
        lead_of = [
            ws.name for ws in self.directory.workspaces_of(person) if person in ws.team_leads
        ]
        if command.workspace:
            if command.workspace not in lead_of:
                raise PermissionRefusedError(
                    f"The audit trail of `{command.workspace}` is for its team leads only."
                )
            lead_of = [command.workspace]
        if not lead_of:
            raise PermissionRefusedError(
                "The audit trail is for team leads only. Your own requests: `/aml request list`."
            )
        since = self.clock.now() - command.since if command.since else None
        with self.store.transaction() as session:
            rows = audit.query(session, workspaces=lead_of, since=since, limit=50)
        if not rows:
            return Reply(text="No audit events in that period.")
        lines = [f"*Audit trail of {', '.join(f'`{w}`' for w in lead_of)}* (newest first)"]
        for row in rows:
            lines.append(
                f"• {when(row.at)} {row.actor} {row.action} {row.target or ''}"
                f"{_what_was_asked(row)} -> {row.outcome}"
            )
        lines.append("Full export: `amlbot audit export --format jsonl`")
        return Reply(text="\n".join(lines))


def _what_was_asked(row: AuditRow) -> str:
    """The request's summary (cluster and duration, datastore, job) as the export has it,
    so a lead reading the trail in chat sees what was asked, not only a number."""
    summary = (row.detail or {}).get("summary")
    if not summary:
        return ""
    text = str(summary)
    return f" ({text[:117]}...)" if len(text) > 120 else f" ({text})"
