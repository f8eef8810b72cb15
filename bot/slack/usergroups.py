"""Members of a Slack user group, for approver groups (`groups: NAME: slack_usergroup: S...`).

Asked with `usergroups.users.list` (scope `usergroups:read`) and kept for a few minutes, so
a burst of clicks asks once; a failed call keeps the last known members (or none, which
refuses the click with the group named, never lets anyone else decide).
"""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from workspaces.clock import Clock

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0


class UserGroupMembers:
    def __init__(self, client: WebClient, clock: Clock, ttl: float = CACHE_SECONDS) -> None:
        self.client = client
        self.clock = clock
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, list[str]]] = {}

    def __call__(self, usergroup: str) -> list[str]:
        now = self.clock.now().timestamp()
        with self._lock:
            cached = self._cache.get(usergroup)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        try:
            response = self.client.usergroups_users_list(usergroup=usergroup)
        except SlackApiError as exc:
            log.warning(
                "usergroups.users.list for %s failed: %s", usergroup, exc.response.get("error")
            )
            return cached[1] if cached is not None else []
        users = [u for u in response.get("users") or [] if isinstance(u, str)]
        with self._lock:
            self._cache[usergroup] = (now, users)
        return users
