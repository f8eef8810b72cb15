"""People are their Slack user ids; a person configured by e-mail is looked up once with
`users.lookupByEmail` and remembered in the database; ids from another team are nobody."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from slack_sdk import WebClient

from approvals.config import AppConfig
from approvals.directory import Directory
from bot.settings import Settings
from bot.slack.app import build_slack
from bot.slack.deliveries import Delivery
from bot.slack.identity import Identity
from bot.wiring import Core, build_core
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import BOT_TOKEN, running_bot
from workspaces.clock import ManualClock

DAVE = "U0DAVE0001"


@pytest.fixture
def dave_core(demo_config: AppConfig, sqlite_url: str, clock: ManualClock) -> Iterator[Core]:
    demo = demo_config.workspaces["demo"]
    with_dave = demo.model_copy(
        update={"data_scientists": [*demo.data_scientists, "dave@example.com"]}
    )
    config = demo_config.model_copy(update={"workspaces": {"demo": with_dave}})
    core = build_core(config, database_url=sqlite_url, clock=clock)
    yield core
    core.store.engine.dispose()


def identity(core: Core, slack: FakeSlack) -> Identity:
    client = WebClient(token=BOT_TOKEN, base_url=slack.base_url)
    return Identity(Directory(core.config), core.store, core.clock, client)


def test_an_email_is_looked_up_once_and_remembered(dave_core: Core, fake_slack: FakeSlack) -> None:
    fake_slack.add_user(DAVE, "dave@example.com")
    first = identity(dave_core, fake_slack)
    assert first.resolve_emails() == []
    assert first.directory.slack_id_of("dave@example.com") == DAVE
    again = identity(dave_core, fake_slack)  # the next start, or another replica
    assert again.resolve_emails() == []
    assert again.directory.slack_id_of("dave@example.com") == DAVE
    assert len(fake_slack.calls("users.lookupByEmail")) == 1


def test_an_email_slack_does_not_know_stays_unresolved(
    dave_core: Core, fake_slack: FakeSlack
) -> None:
    assert identity(dave_core, fake_slack).resolve_emails() == ["dave@example.com"]


def test_a_person_configured_by_email_is_recognised_in_slack(
    dave_core: Core, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    fake_slack.add_user(DAVE, "dave@example.com")
    with running_bot(dave_core, clock, fake_slack) as harness:
        harness.command(DAVE, "whoami")
        assert "You are *dave@example.com*" in harness.answer_to(DAVE, containing="You are")


def test_user_id_of_another_team_is_not_the_configured_person(
    dave_core: Core, fake_slack: FakeSlack
) -> None:
    settings = Settings(
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr("s"),
        slack_api_url=fake_slack.base_url,
    )
    bot = build_slack(dave_core, settings)
    body = {"user_id": "U0ALICE01", "team_id": "T0OTHER01"}
    assert bot.edge.person(Delivery(body, "T0AMLTEST", 0)) is None
    assert bot.edge.person(Delivery({**body, "team_id": "T0AMLTEST"}, "T0AMLTEST", 0)) == "alice"
    bot.edge.close()
