"""Who is clicking: a Slack user id (within the installed team) to a configured person.

Identity is the user id, never a display name. People configured by e-mail are resolved
with `users.lookupByEmail` once; the answer is kept in `slack_people`, so later starts and
other replicas do not ask again.
"""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from approvals import slack_people
from approvals.directory import Directory
from approvals.store import Store
from workspaces.clock import Clock

log = logging.getLogger(__name__)

# How long an unknown user id is not looked up again (a guard against a click storm).
UNKNOWN_RECHECK_SECONDS = 600.0


class Identity:
    def __init__(self, directory: Directory, store: Store, clock: Clock, client: WebClient):
        self.directory = directory
        self.store = store
        self.clock = clock
        self.client = client
        self._lock = threading.Lock()
        self._unknown_checked: dict[str, float] = {}

    def load_cached(self) -> int:
        """Teach the directory the e-mails resolved before (by this or another replica)."""
        by_email = slack_people.remembered(self.store)
        learned = 0
        for person in self.directory.people_without_slack_id():
            user_id = by_email.get((person.email or "").lower())
            if user_id:
                self.directory.learn_slack_id(person.name, user_id)
                learned += 1
        return learned

    def resolve_emails(self) -> list[str]:
        """Look up every configured e-mail still without a user id. Returns who is left
        unresolved (not in Slack, or Slack said no) so the caller can log or retry."""
        self.load_cached()
        left = []
        for person in self.directory.people_without_slack_id():
            if person.email is None or self._lookup_email(person.name, person.email) is None:
                left.append(person.name)
        return left

    def slack_id_of(self, person: str) -> str | None:
        slack_id = self.directory.slack_id_of(person)
        if slack_id is not None:
            return slack_id
        info = self.directory.person(person)
        if info is None or info.email is None:
            return None
        return self._lookup_email(person, info.email)

    def person_for_unknown(self, user_id: str) -> str | None:
        """An id the directory does not know may be someone configured by e-mail whose
        lookup has not happened yet: ask Slack for that user's e-mail and match it."""
        now = time.monotonic()
        with self._lock:
            checked = self._unknown_checked.get(user_id)
            if checked is not None and now - checked < UNKNOWN_RECHECK_SECONDS:
                return None
            self._unknown_checked[user_id] = now
        waiting = {
            (p.email or "").lower(): p.name for p in self.directory.people_without_slack_id()
        }
        if not waiting:
            return None
        try:
            profile = self.client.users_info(user=user_id)["user"]["profile"]
        except SlackApiError as exc:
            log.warning("users.info for %s failed: %s", user_id, exc.response.get("error"))
            return None
        name = waiting.get(str(profile.get("email", "")).lower())
        if name is not None:
            self._remember(name, str(profile["email"]), user_id, None)
        return name

    def _lookup_email(self, name: str, email: str) -> str | None:
        try:
            user = self.client.users_lookupByEmail(email=email)["user"]
        except SlackApiError as exc:
            log.warning(
                "cannot resolve %s (%s) to a Slack user: %s",
                name,
                email,
                exc.response.get("error") or exc.response.status_code,
            )
            return None
        self._remember(name, email, str(user["id"]), user.get("team_id"))
        return str(user["id"])

    def _remember(self, name: str, email: str, user_id: str, team_id: str | None) -> None:
        self.directory.learn_slack_id(name, user_id)
        slack_people.remember(self.store, email, user_id, team_id, self.clock.now())
