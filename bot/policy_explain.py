"""`amlbot policy explain`: which rule would decide a sample request, and why.

Nothing is asked of Azure or the database: the month's spend and the last grant are what
the options say (none by default), so the answer depends on the configuration alone.
"""

from __future__ import annotations

import sys

from approvals.config import AppConfig
from approvals.service_risk import History, explain_request
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
        text = explain_request(ws, person, command, History(spent=spent, last_grant_age=age))
    except UserError as exc:
        print(f"Cannot explain: {exc.render()}", file=sys.stderr)
        return 2
    print(text)
    return 0


def _only_workspace(config: AppConfig, person: str) -> str:
    mine = [ws.name for ws in config.workspaces.values() if person in ws.members]
    return mine[0] if len(mine) == 1 else next(iter(config.workspaces))
