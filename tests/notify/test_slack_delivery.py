"""Through the real Slack deliverer, outbox worker and Bolt app against the fake Slack Web
API: job updates threaded under the request's card, the idle digest with working buttons,
the Extend offer, and every message exactly once while Slack answers 429 and 500."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from approvals.config import DEMO_CONFIG_PATH, AppConfig, parse_config
from approvals.following.jobs import follow_jobs
from approvals.idle.digest import sweep_idle
from approvals.idle.spend import idle_spend_between
from approvals.reminders import warn_expiring_grants
from approvals.sweep_tables import ComputeAlertRow
from bot.slack.views.notices import EXTEND_ACTION, IDLE_FIX_ACTION, IDLE_SHUTDOWN_ACTION
from bot.wiring import Core
from tests.fakes.slack_api import Message
from tests.notify.conftest import ALICE, BOB, CAROL, CHANNEL, ENV, NotifyBot, submit_job, wait_for
from workspaces.clock import ManualClock
from workspaces.prices import BOOK, PriceQuote

GPU_JOB = f'job submit --compute gpu-cluster --environment {ENV} --command "python train.py"'


@pytest.fixture
def demo_config() -> AppConfig:
    """The demo, where a job without an access grant asks a lead instead of being refused,
    so the job has an approval card to thread its updates under."""
    text = DEMO_CONFIG_PATH.read_text(encoding="utf-8")
    return parse_config(text.replace("without_grant: refuse", "without_grant: approval"))


def top_level(bot: NotifyBot, channel: str, starting: str) -> Message:
    return wait_for(
        lambda: next(
            (
                m
                for m in bot.slack.messages_in(channel)
                if m.thread_ts is None and m.text.startswith(starting)
            ),
            None,
        ),
        what=f"a message starting {starting!r} in {channel}",
    )


def button_value(message: Message, action_id: str, containing: str) -> str:
    """The value of the `action_id` button in the block following the item `containing`."""
    blocks = message.blocks
    for index, block in enumerate(blocks):
        if block["type"] == "section" and containing in block["text"]["text"]:
            for element in blocks[index + 1].get("elements", []):
                if element.get("action_id") == action_id:
                    return str(element["value"])
    raise AssertionError(f"no {action_id} button for {containing!r}")


def test_job_updates_are_threaded_under_the_requests_card_once(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    assert "waiting for a team lead" in core.service.handle_text("alice", GPU_JOB).text
    notify_bot.deliver()
    card = top_level(notify_bot, CHANNEL, "#1 ")
    assert core.service.handle_text("bob", "approve 1").ok
    for seconds in (0, 100, 130, 400, 500):
        clock.advance(timedelta(seconds=seconds))
        follow_jobs(core, clock.now(), idle_spend=idle_spend_between)
        notify_bot.deliver()

    replies = [m.text for m in notify_bot.slack.replies(CHANNEL, card.ts)]
    assert len([t for t in replies if "is running on `gpu-cluster`" in t]) == 1
    assert len([t for t in replies if "completed on `gpu-cluster`" in t]) == 1
    thread = [m for m in notify_bot.slack.replies(CHANNEL, card.ts) if "is running" in m.text]
    assert f"<@{ALICE}>" in thread[0].all_text  # the requester is named in the thread


def test_while_slack_answers_429_then_500_every_message_arrives_exactly_once(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    start = clock.now()
    BOOK.install(  # prices fetched for the demo's region (westeurope)
        [
            PriceQuote("Standard_DS3_v2", "westeurope", False, 0.293, "retail", start.date()),
            PriceQuote("Standard_DS11_v2", "westeurope", False, 0.185, "retail", start.date()),
        ]
    )
    name = submit_job(core)
    assert "waiting" in core.service.handle_text("carol", GPU_JOB).text  # a card too
    notify_bot.slack.fail_next("chat.postMessage", status=429, retry_after=7, times=3)
    notify_bot.slack.fail_next("chat.postMessage", status=500, times=3)
    for offset in (timedelta(seconds=40), timedelta(minutes=5), timedelta(hours=1)):
        clock.set(start + offset)
        follow_jobs(core, clock.now(), idle_spend=idle_spend_between)
        sweep_idle(core, "demo", clock.now())
        notify_bot.deliver()

    notify_bot.deliver_until_quiet()

    failed = [c for c in notify_bot.slack.calls("chat.postMessage") if not c.ok]
    assert len(failed) == 6  # every injected failure was hit, and retried
    dms = Counter(m.text.splitlines()[0] for m in notify_bot.slack.messages_in(ALICE))
    assert dms[f"Job `{name}` is running on `cpu-cluster`."] == 1
    assert dms[f"Job `{name}` completed on `cpu-cluster` (ran 2m10s, 2m40s after submission)."] == 1
    in_channel = Counter(m.text for m in notify_bot.slack.messages_in(CHANNEL))
    assert all(count == 1 for count in in_channel.values()), in_channel
    digests = sorted(t for t in in_channel if t.startswith("Idle compute in demo"))
    assert [d.split("together ")[1] for d in digests] == ["~$0.18/hour.", "~$0.29/hour."]
    assert len([t for t in in_channel if t.startswith("#2 ")]) == 1


def test_snooze_from_the_digest_quiets_the_compute_and_redraws_the_digest(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    clock.advance(timedelta(hours=1))
    sweep_idle(core, "demo", clock.now())
    notify_bot.deliver()
    digest = top_level(notify_bot, CHANNEL, "Idle compute in demo")
    assert "alice-notebook" in digest.all_text and "Set minimum to 0" in digest.all_text

    value = button_value(digest, "amlbot.idle.snooze_1d", "alice-notebook")
    assert notify_bot.click(CAROL, "amlbot.idle.snooze_1d", value, digest) == 200
    assert "snoozed until 2026-01-06 10:00 UTC" in notify_bot.answer_to(CAROL, "snoozed")

    def edited() -> Message | None:
        shown = notify_bot.slack.message(CHANNEL, digest.ts)
        return shown if shown.edits else None

    redrawn = wait_for(edited, what="the digest redrawn")
    assert "snoozed until 2026-01-06 10:00 UTC by carol" in redrawn.all_text
    with core.store.transaction() as session:
        state = session.scalars(
            select(ComputeAlertRow).where(ComputeAlertRow.compute == "alice-notebook")
        ).one()
        assert state.snoozed_by == "carol"


def test_a_lead_sets_the_minimum_to_zero_from_the_digest(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    sweep_idle(core, "demo", clock.now())
    notify_bot.deliver()
    digest = top_level(notify_bot, CHANNEL, "Idle compute in demo")
    value = button_value(digest, IDLE_FIX_ACTION, "cpu-cluster")
    assert notify_bot.click(BOB, IDLE_FIX_ACTION, value, digest) == 200
    assert "done" in notify_bot.answer_to(BOB, "set minimum nodes of cpu-cluster to 0")
    cluster = core.backends("demo").list_computes().cluster("cpu-cluster")
    assert cluster is not None and cluster.min_nodes == 0


def test_a_lead_sets_a_long_idle_time_from_the_digest(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    core.backends("demo").set_cluster_idle_time("gpu-cluster", 3600)
    sweep_idle(core, "demo", clock.now())
    notify_bot.deliver()
    digest = top_level(notify_bot, CHANNEL, "Idle compute in demo")
    assert "Set idle time to 2 min" in digest.all_text
    value = button_value(digest, IDLE_FIX_ACTION, "gpu-cluster")
    assert notify_bot.click(BOB, IDLE_FIX_ACTION, value, digest) == 200
    assert "done" in notify_bot.answer_to(BOB, "set idle time of gpu-cluster to 2m")
    cluster = core.backends("demo").list_computes().cluster("gpu-cluster")
    assert cluster is not None and cluster.idle_seconds_before_scale_down == 120


def test_anyone_asks_for_an_instances_idle_shutdown_from_the_digest_beside_stop(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    clock.advance(timedelta(hours=1))
    sweep_idle(core, "demo", clock.now())
    notify_bot.deliver()
    digest = top_level(notify_bot, CHANNEL, "Idle compute in demo")
    assert "Stop instance" in digest.all_text and "Set idle shutdown to 30 min" in digest.all_text
    value = button_value(digest, IDLE_SHUTDOWN_ACTION, "alice-notebook")
    assert notify_bot.click(CAROL, IDLE_SHUTDOWN_ACTION, value, digest) == 200
    answer = notify_bot.answer_to(CAROL, "set idle shutdown of alice-notebook to 30 min")
    assert "is waiting for a team lead of `demo`" in answer
    (instance,) = core.backends("demo").list_computes().instances
    assert instance.idle_shutdown_minutes is None  # until a lead approves
    assert core.service.handle_text("bob", "approve 1").ok
    (instance,) = core.backends("demo").list_computes().instances
    assert instance.idle_shutdown_minutes == 30


def test_the_grant_expiry_warning_offers_extend_which_goes_to_the_core(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    assert core.service.handle_text(
        "alice", 'access request gpu-cluster --for 2h --reason "train"'
    ).ok
    assert core.service.handle_text("bob", "approve 1").ok
    clock.advance(timedelta(hours=2) - timedelta(minutes=10))
    assert warn_expiring_grants(core, clock.now()) == [1]
    notify_bot.deliver()
    warning = wait_for(
        lambda: next((m for m in notify_bot.slack.messages_in(ALICE) if "ends" in m.text), None),
        what="the expiry warning",
    )
    assert "Extend" in warning.all_text
    assert notify_bot.click(ALICE, EXTEND_ACTION, "1", warning) == 200
    # Whatever the core decides (a new request, or why not), it answers the click.
    assert "gpu-cluster" in notify_bot.answer_to(ALICE, "gpu-cluster")
