"""Access that ends with the work, and break-glass, through the real Bolt app and the fake
Slack: the card says how the access will end and, redrawn, how it ended; the holder with a
job still running is warned with an Extend button that asks the leads again; a break-glass
use is granted at once, every lead is told, and its review card is decided by a click."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from approvals.config import AppConfig
from approvals.config_access import BreakGlassPolicy
from approvals.scheduled import run_due
from approvals.tables import GrantRow
from bot.slack.views.common import APPROVE_ACTION
from bot.slack.views.notices import EXTEND_ACTION
from bot.wiring import Core
from tests.fakes.slack_api import FakeSlack, Message
from tests.slack.conftest import ALICE, BOB, CHANNEL, SlackHarness, running_bot, wait_for
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace

ENV = "azureml:AzureML-sklearn-1.5@latest"
UNTIL_DONE = 'access request gpu-cluster --until-done --for {limit} --reason "fine-tune BERT"'


@pytest.fixture
def demo_config(demo_config: AppConfig) -> AppConfig:
    """The demo, where members may break the glass for up to an hour."""
    ws = demo_config.workspaces["demo"]
    policy = ws.policy.model_copy(update={"break_glass": BreakGlassPolicy(allowed=True)})
    return demo_config.model_copy(
        update={"workspaces": {"demo": ws.model_copy(update={"policy": policy})}}
    )


def granted(harness: SlackHarness, limit: str) -> int:
    assert harness.command(ALICE, UNTIL_DONE.format(limit=limit)).status == 200
    request_id = harness.request_id(harness.answer_to(ALICE, containing="is waiting"))
    card = harness.card(request_id)
    assert "until the work is done: ends 30m after" in card.all_text
    assert harness.click(BOB, APPROVE_ACTION, request_id).status == 200
    harness.answer_to(BOB, containing="until the work there is done")
    return request_id


def run_job(harness: SlackHarness, seconds: int) -> str:
    command = f'job submit --compute gpu-cluster --environment {ENV} --command "sleep {seconds}"'
    assert harness.command(ALICE, command).status == 200
    return harness.answer_to(ALICE, containing="submitted on").split("`")[1]


def sweep(harness: SlackHarness, minutes: int) -> None:
    for _ in range(minutes):
        harness.clock.advance(timedelta(minutes=1))
        run_due(harness.core, harness.core.service.workflow, harness.clock.now())
    harness.wake_outbox()


def latest(harness: SlackHarness, card: Message, containing: str) -> Message:
    return wait_for(
        lambda: (
            m if containing in (m := harness.slack.message(CHANNEL, card.ts)).all_text else None
        ),
        what=f"the card to say {containing!r}",
    )


def test_the_card_and_the_message_say_the_access_ended_with_the_work(
    harness: SlackHarness,
) -> None:
    request_id = granted(harness, "8h")
    job = run_job(harness, 600)
    sweep(harness, 45)
    card = latest(harness, harness.card(request_id), "ended with the work")
    assert f"your last job `{job}` finished" in card.all_text
    dm = harness.dm_to(ALICE, "was revoked: your work there ended")
    assert "nothing of yours ran for 30m" in dm.all_text


def test_at_the_time_limit_the_card_says_so(harness: SlackHarness) -> None:
    request_id = granted(harness, "1h")
    run_job(harness, 3 * 3600)
    sweep(harness, 61)
    latest(harness, harness.card(request_id), "ended at its time limit")
    harness.dm_to(ALICE, "its time limit was reached before your work ended")


def test_a_running_job_brings_a_warning_whose_extend_asks_the_leads(
    harness: SlackHarness,
) -> None:
    granted(harness, "1h")
    job = run_job(harness, 3 * 3600)
    sweep(harness, 46)
    warning = harness.dm_to(ALICE, "reaches its time limit")
    assert f"`{job}` (Running)" in warning.all_text
    assert harness.click(ALICE, EXTEND_ACTION, 1, card=warning).status == 200
    answer = harness.answer_to(ALICE, containing="is waiting for a team lead")
    extension = harness.card(harness.request_id(answer))
    assert "until the work is done" in extension.all_text


def test_break_glass_is_granted_at_once_and_its_review_is_a_card(harness: SlackHarness) -> None:
    text = 'access request gpu-cluster --emergency --for 30m --reason "prod model down"'
    assert harness.command(ALICE, text).status == 200
    answer = harness.answer_to(ALICE, containing="Break-glass")
    assert "alice has access to `gpu-cluster`" in answer
    harness.dm_to(BOB, "used break-glass access to `gpu-cluster`")
    review = harness.card(2)
    assert "Review break-glass access to gpu-cluster" in review.all_text
    assert harness.click(BOB, APPROVE_ACTION, 2).status == 200
    assert "justified" in harness.answer_to(BOB, containing="Review #2 done")
    latest(harness, review, "done, approved by")


def test_a_job_approved_without_a_grant_says_so_on_its_card_and_leaves_no_access(
    core_without_grant: SlackHarness,
) -> None:
    harness = core_without_grant
    command = f'job submit --compute gpu-cluster --environment {ENV} --command "sleep 60"'
    assert harness.command(ALICE, command).status == 200
    request_id = harness.request_id(harness.answer_to(ALICE, containing="is waiting"))
    card = harness.card(request_id)
    assert "none granted: approving runs this one job, nothing more" in card.all_text
    assert harness.click(BOB, APPROVE_ACTION, request_id).status == 200
    harness.answer_to(BOB, containing="submitted on `gpu-cluster`")
    backend = harness.core.backends("demo")
    assert isinstance(backend, LocalWorkspace) and backend.role_assignments() == []
    with harness.core.store.transaction() as session:
        assert session.scalars(select(GrantRow)).all() == []


@pytest.fixture
def core_without_grant(
    make_core: Callable[[AppConfig, str], Core],
    demo_config: AppConfig,
    sqlite_url: str,
    clock: ManualClock,
    fake_slack: FakeSlack,
) -> Iterator[SlackHarness]:
    """The demo where a job without a grant goes to a lead instead of being refused."""
    ws = demo_config.workspaces["demo"]
    jobs = ws.policy.jobs.model_copy(update={"without_grant": "approval"})
    policy = ws.policy.model_copy(update={"jobs": jobs})
    config = demo_config.model_copy(
        update={"workspaces": {"demo": ws.model_copy(update={"policy": policy})}}
    )
    with running_bot(make_core(config, sqlite_url), clock, fake_slack) as running:
        yield running
