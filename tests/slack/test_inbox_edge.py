"""The edge keeps what it acknowledges: a delivery is in the inbox before Slack hears 200,
without the secrets in it, once per delivery key, and is answered even if the process that
acked it stops, or Slack's auth.test fails, before it is handled."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from sqlalchemy import select

from approvals.tables import InboxRow
from bot.slack.deliveries import withhold_secrets
from bot.slack.edge import SlackOptions
from bot.slack.views.common import APPROVE_ACTION
from bot.wiring import Core
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import slash_command_body
from tests.slack.conftest import (
    ALICE,
    BOB,
    CHANNEL,
    SlackHarness,
    restarted,
    running_bot,
    wait_for,
)
from workspaces.clock import ManualClock

STORAGE_KEY = "Zm9v" * 21 + "YQ=="  # 86 base64 characters and "==": a storage key's shape


def inbox_rows(core: Core) -> list[InboxRow]:
    with core.store.transaction() as session:
        return list(session.scalars(select(InboxRow).order_by(InboxRow.id)))


def test_an_acked_command_is_answered_by_the_next_process_when_the_first_stopped_first(
    core: Core, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    with running_bot(core, clock, fake_slack) as first:
        worker = next(s for s in first.services if s.name == "inbox")
        worker.stop()  # this process acks but will never handle anything
        assert first.command(ALICE, "help").status == 200
        assert [row.status for row in inbox_rows(core)] == ["pending"]
        assert fake_slack.response_posts() == []
        with restarted(first) as second:
            assert "access request" in second.answer_to(ALICE)
    assert [row.status for row in inbox_rows(core)] == ["done"]


def test_a_delivery_sent_twice_is_kept_and_answered_once(harness: SlackHarness) -> None:
    body = slash_command_body(
        "help",
        user_id=ALICE,
        response_url=harness.slack.response_url(CHANNEL, ALICE),
        trigger_id="12345.98765.abcd",
    )
    assert harness.post(body).status == 200
    assert harness.post(body, headers={"X-Slack-Retry-Num": "1"}).status == 200
    harness.answer_to(ALICE)
    assert len(inbox_rows(harness.core)) == 1
    assert len([p for p in harness.slack.response_posts() if p.user == ALICE]) == 1


def test_a_pasted_secret_is_withheld_before_the_delivery_is_kept(harness: SlackHarness) -> None:
    harness.command(ALICE, f"datastore register x --kind blob --account {STORAGE_KEY}")
    assert "storage account key" in harness.answer_to(ALICE)
    [row] = inbox_rows(harness.core)
    assert STORAGE_KEY not in json.dumps(row.payload)  # emptied once handled, and before:
    with harness.core.store.engine.connect() as connection:
        dump = "\n".join(str(r) for r in connection.exec_driver_sql("SELECT * FROM inbox"))
    assert STORAGE_KEY not in dump


def test_commands_that_arrive_while_auth_test_fails_are_answered_once_it_succeeds(
    core: Core, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    fake_slack.fail_next("auth.test", status=500, times=2)
    with running_bot(core, clock, fake_slack) as harness:
        assert harness.command(ALICE, "help").status == 200

        def answered() -> str | None:
            clock.advance(timedelta(seconds=3))  # past the retry's backoff
            harness.bot.edge.worker.wake()  # type: ignore[union-attr]
            posts = [p for p in fake_slack.response_posts() if p.user == ALICE]
            return posts[0].text if posts else None

        text = wait_for(answered, what="the answer once auth.test succeeds")
    assert "access request" in text
    assert [row.status for row in inbox_rows(core)] == ["done"]


def test_a_click_the_lead_makes_is_kept_like_a_command(harness: SlackHarness) -> None:
    reply = harness.command(ALICE, 'access request gpu-cluster --for 2h --reason "BERT"')
    assert reply.status == 200
    request_id = harness.request_id(harness.answer_to(ALICE, containing="Request #"))
    assert harness.click(BOB, APPROVE_ACTION, request_id).status == 200
    assert "Approved" in harness.answer_to(BOB, containing="Approved")
    handlers = [row.handler for row in inbox_rows(harness.core)]
    assert handlers == ["slack.run_command", "slack.approve"]


def test_an_item_that_fails_every_attempt_is_told_to_the_person_and_the_leads(
    core: Core, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    with running_bot(core, clock, fake_slack) as harness:
        worker = harness.bot.edge.worker
        assert worker is not None
        worker.max_attempts = 1
        harness.bot.edge.jobs["slack.run_command"] = _always_fails
        assert harness.command(ALICE, "help").status == 200
        told = harness.answer_to(ALICE, containing="error id")
        error_id = told.split("`")[1]
        harness.dm_to(BOB, f"error id `{error_id}`")
    [row] = inbox_rows(core)
    assert row.status == "dead" and error_id in (row.last_error or "")


def _always_fails(edge: object, delivery: object) -> None:
    raise RuntimeError("a bug in this version")


def test_a_modal_is_opened_by_the_acking_process_and_its_item_is_done(
    harness: SlackHarness,
) -> None:
    """A Deny click must open its modal within the trigger's 3 s: the edge runs it and marks
    the item done, so no worker runs it a second time."""
    from bot.slack.views.common import DENY_ACTION, DENY_MODAL

    reply = harness.command(ALICE, 'access request gpu-cluster --for 2h --reason "BERT"')
    assert reply.status == 200
    request_id = harness.request_id(harness.answer_to(ALICE, containing="Request #"))
    assert harness.click(BOB, DENY_ACTION, request_id).status == 200
    harness.modal(DENY_MODAL)

    def deny_click() -> InboxRow | None:
        rows = [r for r in inbox_rows(harness.core) if r.handler == "slack.ask_deny_reason"]
        return rows[0] if rows and rows[0].status == "done" else None

    row = wait_for(deny_click, what="the Deny click's item to be done")
    assert row.claimed_by == harness.bot.edge.holder and row.attempts == 1
    assert len([v for v in harness.slack.views() if v.view.get("callback_id") == DENY_MODAL]) == 1


def test_the_fields_slack_writes_are_kept_and_every_other_is_scanned() -> None:
    url = "https://hooks.slack.com/commands/T0001/1234/abcd"
    body = {
        "token": "legacy-verification-token",
        "response_url": url,
        "trigger_id": "1234.5678.abcd",
        "text": f"datastore register x --account {STORAGE_KEY}",
        "channel_name": STORAGE_KEY,  # a name people choose: scanned, and withheld
        "view": {"private_metadata": json.dumps({"response_url": STORAGE_KEY})},
    }
    cleaned, typed = withhold_secrets(body)
    assert cleaned["response_url"] == url and cleaned["trigger_id"] == "1234.5678.abcd"
    assert "token" not in cleaned
    assert STORAGE_KEY not in json.dumps(cleaned)
    assert typed == ["a storage account key"] * 2  # the text and the view
    # A field of Slack's only at the top: the same name inside what people send is scanned.
    nested, _ = withhold_secrets({"actions": [{"response_url": STORAGE_KEY}]})
    assert STORAGE_KEY not in json.dumps(nested)


def test_a_modal_slow_to_open_is_not_taken_over_by_a_worker(
    core: Core, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    """The edge opens a form itself, right after the ack, on an item it holds with a lease.
    Building the form may wait on Azure for longer than the lease: the edge renews it, so no
    worker takes the item over and opens it again (with a trigger expired by then, which
    would tell the person to type the command again while their form is on its way)."""
    asked, slack_answers = fake_slack.hold_answers("views.open")
    lease = timedelta(seconds=0.9)  # renewed every 0.3 s
    with running_bot(core, clock, fake_slack, SlackOptions(edge_lease=lease)) as harness:
        assert harness.command(ALICE, "job submit").status == 200
        assert asked.wait(5), "the form was not opened"
        for _ in range(50):  # nearly three leases go by, as time does: a step at a time
            time.sleep(0.05)
            clock.advance(timedelta(seconds=0.05))
        slack_answers.set()
        wait_for(lambda: inbox_rows(core)[0].status == "done", what="the form's item done")
        assert len(fake_slack.calls("views.open")) == 1
        [row] = inbox_rows(core)
        assert row.attempts == 1
