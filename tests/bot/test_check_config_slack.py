"""`amlbot check-config --online` asks Slack which scopes the bot token has and names what
is missing and why; the scopes it expects are the manifest's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.slack.scopes import IN_DOUBT, NEEDED
from tests.fakes.slack_api import ALL_SCOPES, FakeSlack

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "xoxb-check"


def check_online(slack: FakeSlack, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMLBOT_"))}
    env.update(SLACK_BOT_TOKEN=token, SLACK_API_URL=slack.base_url)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", "--online"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_the_manifest_asks_for_exactly_the_scopes_the_bot_knows() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yml").read_text())
    asked = set(manifest["oauth_config"]["scopes"]["bot"])
    assert asked == set(NEEDED) | set(IN_DOUBT)
    assert asked == set(ALL_SCOPES)  # and the fake Slack grants what the manifest asks


def test_a_token_with_every_scope_passes() -> None:
    with FakeSlack(token=TOKEN) as slack:
        result = check_online(slack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Slack: the bot token has every scope it needs" in result.stdout


def test_without_the_history_scopes_it_warns_what_that_costs() -> None:
    with FakeSlack(token=TOKEN, scopes=ALL_SCOPES - {"im:history", "groups:history"}) as slack:
        result = check_online(slack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: the bot token lacks `groups:history`, `im:history`" in result.stdout
    assert "may show twice" in result.stdout


@pytest.mark.parametrize("scope", ["chat:write", "users:read.email"])
def test_a_missing_needed_scope_is_a_problem(scope: str) -> None:
    with FakeSlack(token=TOKEN, scopes=ALL_SCOPES - {scope}) as slack:
        result = check_online(slack)
    assert result.returncode == 1
    assert f"the bot token lacks `{scope}` ({NEEDED[scope]})" in result.stdout


def test_a_refused_token_is_a_problem_and_is_not_printed() -> None:
    with FakeSlack(token=TOKEN) as slack:
        result = check_online(slack, token="xoxb-wrong-secret-value")
    assert result.returncode == 1
    assert "Slack refused the bot token: invalid_auth" in result.stdout
    assert "xoxb-wrong-secret-value" not in result.stdout + result.stderr
