"""Who may decide a request and who may see it.

A rule's approver group decides what it names; otherwise the workspace's leads (or, once
escalated, its fallback approvers), never the requester. Members of a request's workspace
may see it; to anyone else it is not there, and refusals name nothing they could not see.
"""

from __future__ import annotations

from approvals import audit
from approvals.escalation import may_decide_escalated
from approvals.payloads import rule_of
from approvals.tables import RequestRow
from approvals.wording import short_ref
from approvals.workflow_base import WorkflowBase
from shared.errors import PermissionRefusedError


class DecisionRights(WorkflowBase):
    def _refuse_decision(self, row: RequestRow, actor: str, verb: str) -> None:
        """Only those `may_decide` decide; any other attempt is audited and refused."""
        problem = self._decision_problem(row, actor, verb)
        if problem is None:
            return
        with self.store.transaction() as session:
            audit.record(
                session,
                at=self.clock.now(),
                actor=actor,
                action=f"request.{verb}",
                outcome="refused",
                workspace=row.workspace,
                target=short_ref(row.id),
                why=problem,
            )
        raise PermissionRefusedError(problem)

    def _decision_problem(self, row: RequestRow, actor: str, verb: str) -> str | None:
        """Why `actor` may not decide `row` (None: they may): a rule's approver group, else
        the workspace's leads (or, once escalated, its fallback approvers), never the
        requester."""
        problem = None
        rule = rule_of(row.payload)
        group = rule.approvers if rule is not None else None
        if (
            rule is not None
            and group
            and actor != row.requester
            and not may_decide_escalated(row, actor, self.config)
        ):
            # A rule named the approvers: its group decides, not the workspace's leads.
            members = self.directory.group_members(group)
            if actor not in members:
                problem = (
                    f"Only members of group `{group}` ({', '.join(members) or 'nobody yet'}) "
                    f"can {verb} {short_ref(row.id)}, as policy rule "
                    f"`{rule.name}` says."
                )
        elif not self.may_see(actor, row):
            problem = not_yours(row.id)
        elif not (
            self.directory.is_lead(actor, row.workspace)
            or may_decide_escalated(row, actor, self.config)
        ):
            leads = ", ".join(self.directory.leads(row.workspace))
            problem = (
                f"Only team leads of `{row.workspace}` ({leads}) can {verb} {short_ref(row.id)}."
            )
        elif actor == row.requester:
            problem = (
                f"You cannot {verb} your own request {short_ref(row.id)}; another team lead "
                f"must decide it."
                + (f" To withdraw it: `/aml request cancel {row.id}`" if verb == "deny" else "")
            )
        return problem

    def may_decide(self, person: str, row: RequestRow) -> bool:
        """Who may approve or deny (the rule of `_decision_problem`); `_refuse_decision`
        says why not, and audits the attempt."""
        return self._decision_problem(row, person, "decide") is None

    def may_see(self, person: str, row: RequestRow) -> bool:
        """Members of a request's workspace may see it; to anyone else it is not there."""
        return (
            person == row.requester
            or any(ws.name == row.workspace for ws in self.directory.workspaces_of(person))
            or may_decide_escalated(row, person, self.config)
        )


def not_yours(request_id: int) -> str:
    """The refusal for a request of a workspace the person is not in: it names neither
    that workspace nor its people, which they could not see otherwise."""
    return (
        f"There is no request {short_ref(request_id)} in a workspace you belong to; "
        f"nothing was done. Yours: `/aml request list`."
    )
