"""The bot token's scopes: which the bot needs, which it can do without, and why.

`deploy/slack-manifest.yml` asks for exactly these (a test holds the two together), and
`amlbot check-config --online` compares them with what Slack says the token has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

NEEDED = {
    "commands": "the /aml slash command",
    "chat:write": "approval cards, their updates, thread replies and DMs",
    "users:read": "users.info: match a person configured by e-mail who clicks first",
    "users:read.email": "users.lookupByEmail: people configured by e-mail",
    "usergroups:read": "usergroups.users.list: approver groups that are Slack user groups",
}
# Only to find a post whose answer never came (bot.slack.delivery); without them such a
# post is repeated and may show twice.
IN_DOUBT = {
    "channels:history": "find a post in doubt in a public channel",
    "groups:history": "find a post in doubt in a private channel",
    "im:history": "find a post in doubt in a DM",
    "im:write": "conversations.open: the DM a post to a user id went to",
}


@dataclass(frozen=True)
class ScopeReport:
    problems: list[str]
    warnings: list[str]


def compare(granted: Iterable[str]) -> ScopeReport:
    have = set(granted)
    problems = [
        f"the bot token lacks `{scope}` ({why}); add it in the app's OAuth settings "
        "(deploy/slack-manifest.yml lists every scope) and reinstall the app"
        for scope, why in NEEDED.items()
        if scope not in have
    ]
    missing = [scope for scope in IN_DOUBT if scope not in have]
    warnings = (
        [
            f"the bot token lacks {', '.join(f'`{s}`' for s in missing)}: a post whose answer "
            "is lost (a crash or timeout while Slack answers) is posted again and may show "
            "twice, instead of being looked up"
        ]
        if missing
        else []
    )
    return ScopeReport(problems, warnings)


def granted_scopes(client: WebClient) -> list[str]:
    """The token's scopes as Slack names them in the `X-OAuth-Scopes` header of `auth.test`."""
    response = client.auth_test()
    for name, value in response.headers.items():
        if name.lower() == "x-oauth-scopes":
            raw = value[0] if isinstance(value, list) else value
            return [scope.strip() for scope in str(raw).split(",") if scope.strip()]
    return []


def check_token(client: WebClient) -> ScopeReport:
    try:
        return compare(granted_scopes(client))
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        return ScopeReport([f"Slack refused the bot token: {error or exc}"], [])
    except OSError as exc:
        return ScopeReport([f"Slack could not be reached: {exc}"], [])
