"""Who is who: people, their workspaces and their roles, from configuration.

Identity is the Slack user id, or the configured name on the console; a display name never
identifies anyone. E-mails in configuration are resolved to Slack ids by the Slack edge,
which tells the directory through `learn_slack_id`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from approvals.config import AppConfig, Person, WorkspaceConfig
from shared.errors import PermissionRefusedError, UsageError


class Directory:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._people = {person.name: person for person in config.all_people()}
        self._by_slack_id = {p.slack_id: p.name for p in self._people.values() if p.slack_id}
        # Set by the Slack edge: a Slack user group id -> its members' Slack user ids.
        self.usergroup_members: Callable[[str], list[str]] | None = None

    def group_members(self, group: str) -> list[str]:
        """Everyone in approver group `group`: its YAML members, and the members of its Slack
        user group known by name (or by Slack user id when the configuration has no name)."""
        config = self.config.groups.get(group)
        if config is None:
            return []
        names = [self.config.person(ref).name for ref in config.members]
        if config.slack_usergroup and self.usergroup_members is not None:
            for slack_id in self.usergroup_members(config.slack_usergroup):
                person = self.by_slack_id(slack_id)
                names.append(person.name if person else slack_id)
        return list(dict.fromkeys(names))

    def person(self, name: str) -> Person | None:
        return self._people.get(name)

    def by_name(self, name: str) -> Person | None:
        return self._people.get(name)

    def by_slack_id(self, slack_id: str) -> Person | None:
        with self._lock:
            name = self._by_slack_id.get(slack_id)
        return self._people.get(name) if name else None

    def slack_id_of(self, name: str) -> str | None:
        with self._lock:
            for slack_id, person in self._by_slack_id.items():
                if person == name:
                    return slack_id
        return None

    def people_without_slack_id(self) -> list[Person]:
        with self._lock:
            known = set(self._by_slack_id.values())
        return [p for p in self._people.values() if p.name not in known and p.email]

    def learn_slack_id(self, name: str, slack_id: str) -> None:
        with self._lock:
            self._by_slack_id[slack_id] = name

    def workspaces_of(self, name: str) -> list[WorkspaceConfig]:
        return [ws for ws in self.config.workspaces.values() if name in ws.members]

    def is_lead(self, name: str, workspace: str) -> bool:
        ws = self.config.workspaces.get(workspace)
        return ws is not None and name in ws.team_leads

    def leads(self, workspace: str) -> list[str]:
        return list(self.config.workspaces[workspace].team_leads)

    def workspace_for_channel(self, channel: str | None) -> WorkspaceConfig | None:
        if channel is None:
            return None
        return next((ws for ws in self.config.workspaces.values() if ws.channel == channel), None)

    def resolve_workspace(
        self, person: str, requested: str | None, channel: str | None
    ) -> WorkspaceConfig:
        """The workspace a command acts on: named, else the channel's, else the only one."""
        mine = self.workspaces_of(person)
        if not mine:
            raise PermissionRefusedError(
                "You are not a member of any workspace this bot governs. Ask a team lead to "
                "add you to the amlbot configuration (as a data scientist of a workspace)."
            )
        names = [ws.name for ws in mine]
        if requested is not None:
            if requested not in self.config.workspaces:
                raise UsageError(
                    f"There is no workspace `{requested}`. Yours: {', '.join(names)}.",
                    field="--workspace",
                    example=f"--workspace {names[0]}",
                )
            if requested not in names:
                raise PermissionRefusedError(
                    f"You are not a member of workspace `{requested}`. Yours: {', '.join(names)}."
                )
            return self.config.workspaces[requested]
        bound = self.workspace_for_channel(channel)
        if bound is not None and bound.name in names:
            return bound
        if len(mine) == 1:
            return mine[0]
        raise UsageError(
            f"You belong to several workspaces ({', '.join(names)}); say which one.",
            field="--workspace",
            example=f"--workspace {names[0]}",
        )


def fallback_approvers(ws: WorkspaceConfig, config: AppConfig, requester: str) -> list[str]:
    """The fallback approvers as person names (config references resolved)."""
    names = [config.person(ref).name for ref in ws.policy.escalation.fallback_approvers]
    return [name for name in dict.fromkeys(names) if name != requester]
