"""`amlbot policy explain`: which rule would decide a sample request, and why.

Nothing is asked of Azure or the database: the month's spend and the last grant are what
the options say (none by default), so the answer depends on the configuration alone.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from approvals.config import AppConfig
from approvals.costs import grant_estimate, job_estimate
from approvals.policy import access_duration, job_limit, require_cluster
from approvals.rule_models import RuleAction
from approvals.rules import RequestFacts, explain
from commands import models as m
from commands.durations import parse_duration
from commands.parser import parse_command
from shared.errors import UserError


def policy_explain(
    config: AppConfig,
    person: str,
    command_text: str,
    workspace: str | None = None,
    spent: float = 0.0,
    last_grant_ago: str | None = None,
) -> int:
    try:
        text = command_text if command_text.startswith("/aml") else f"/aml {command_text}"
        command = parse_command(text)
        if not isinstance(command, m.AccessRequest | m.JobSubmit):
            raise UserError(
                "policy explain takes an `access request` or a `job submit`, e.g. "
                '"access request gpu-cluster --for 2h --reason test"'
            )
        name = workspace or command.workspace or _only_workspace(config, person)
        ws = config.workspaces.get(name)
        if ws is None:
            raise UserError(
                f"No workspace `{name}`; workspaces: {', '.join(config.workspaces)}. "
                "Name one with --workspace."
            )
        age = parse_duration(last_grant_ago) if last_grant_ago else None
    except UserError as exc:
        print(f"Cannot explain: {exc.render()}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a malformed --last-grant-ago
        print(f"Cannot explain: {exc}", file=sys.stderr)
        return 2
    try:
        if isinstance(command, m.AccessRequest):
            action: RuleAction = "access"
            cluster = require_cluster(ws, command.cluster)
            duration = access_duration(ws, command.duration)
            estimate = grant_estimate(cluster, duration, ws.region)
        else:
            action = "job"
            cluster = require_cluster(ws, command.compute)
            limit = job_limit(ws, command.max_duration)
            if limit is None:
                print("No --max-duration and no policy default: estimated for one hour.")
            duration = limit or timedelta(hours=1)
            estimate = job_estimate(cluster, command.instances, duration, ws.region)
    except UserError as exc:
        print(f"Cannot explain: {exc.render()}", file=sys.stderr)
        return 2
    facts = RequestFacts(
        action=action,
        requester=person,
        is_lead=person in ws.team_leads,
        is_member=person in ws.members,
        cluster=cluster,
        duration=duration,
        estimate=estimate,
        spent=spent,
        budget=ws.budget.monthly_usd if ws.budget else None,
        last_grant_age=age,
    )
    print(explain(ws, facts))
    return 0


def _only_workspace(config: AppConfig, person: str) -> str:
    mine = [ws.name for ws in config.workspaces.values() if person in ws.members]
    return mine[0] if len(mine) == 1 else next(iter(config.workspaces))
