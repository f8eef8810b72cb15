"""Approval cards through Slack: posted for a privileged request, decided by a lead's
click, refused (ephemerally, audited) for anyone else, updated in place, and a doubled
click executes once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from approvals.config import AppConfig
from approvals.tables import AuditRow, GrantRow, RequestRow
from bot.slack.views.common import APPROVE_ACTION
from bot.wiring import build_core
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import interactive_body
from tests.slack.conftest import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    SlackHarness,
    restarted,
    running_bot,
    wait_for,
)
from workspaces.clock import ManualClock
from workspaces.prices import BOOK, PriceQuote

ACCESS = 'access request gpu-cluster --for 2h --reason "fine-tune BERT"'


def ask_for_access(
    harness: SlackHarness, user: str = ALICE, waiting_for: str = "a team lead"
) -> int:
    response = harness.command(user, ACCESS)
    assert response.status == 200
    return harness.request_id(harness.answer_to(user, containing=f"is waiting for {waiting_for}"))


def buttons(blocks: list[dict]) -> list[str]:
    return [
        element["action_id"]
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def refusals(harness: SlackHarness, actor: str) -> int:
    with harness.core.store.transaction() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AuditRow)
                .where(AuditRow.actor == actor, AuditRow.outcome == "refused")
            )
            or 0
        )


def test_slash_command_is_acked_at_once_with_an_empty_body(harness: SlackHarness) -> None:
    response = harness.command(ALICE, "help")
    assert (response.status, response.body) == (200, "")
    assert "/aml" in harness.answer_to(ALICE)


def test_privileged_request_posts_a_card_with_what_azure_will_do(harness: SlackHarness) -> None:
    # The demo's gpu-cluster: low-priority NC6s_v3 in eastus, as a refresh fetched it.
    fetched = harness.core.clock.now().date() - timedelta(days=3)
    BOOK.install([PriceQuote("Standard_NC6s_v3", "eastus", True, 0.6734, "retail", fetched)])
    request_id = ask_for_access(harness)
    card = harness.card(request_id)
    for fact in ("<@U0ALICE01>", "AzureML Data Scientist", "gpu-cluster", "2h", "fine-tune BERT"):
        assert fact in card.all_text
    assert "Est. cost" in card.all_text and "$0.67/node-hour" in card.all_text
    assert "Retail Prices" in card.all_text and "eastus" in card.all_text
    assert buttons(card.blocks) == ["amlbot.approve", "amlbot.deny"]


def test_lead_click_executes_and_updates_the_card_in_place(harness: SlackHarness) -> None:
    request_id = ask_for_access(harness)
    card = harness.card(request_id)
    assert harness.click(BOB, APPROVE_ACTION, request_id).status == 200
    assert "Approved #1" in harness.answer_to(BOB, containing="Approved")
    # The card is redrawn twice, "being carried out" and then "done"; wait for the last.
    updated = wait_for(
        lambda: (
            (m := harness.slack.message(CHANNEL, card.ts)).edits
            and not buttons(m.blocks)
            and "done" in m.all_text
            and m
        ),
        what="the card to show the request done, without buttons",
    )
    assert "approved by bob" in updated.all_text
    # One card, updated in place (the scheduler's idle digest may share the channel).
    cards = [
        m
        for m in harness.slack.messages_in(CHANNEL)
        if m.thread_ts is None and "Access to cluster" in m.all_text
    ]
    assert len(cards) == 1


def test_requester_is_told_in_the_thread_and_by_dm(harness: SlackHarness) -> None:
    request_id = ask_for_access(harness)
    card = harness.card(request_id)
    harness.click(BOB, APPROVE_ACTION, request_id)
    reply = wait_for(lambda: harness.slack.replies(CHANNEL, card.ts), what="a thread reply")[0]
    assert (
        "<@U0ALICE01>" in reply.all_text and "alice has access to `gpu-cluster`" in reply.all_text
    )
    harness.dm_to(ALICE, "alice has access to `gpu-cluster`")


def test_requester_cannot_approve_own_request(
    demo_config: AppConfig, sqlite_url: str, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    demo = demo_config.workspaces["demo"]
    two_leads = demo.model_copy(
        update={"team_leads": ["bob", "carol"], "data_scientists": ["alice"]}
    )
    config = demo_config.model_copy(update={"workspaces": {"demo": two_leads}})
    core = build_core(config, database_url=sqlite_url, clock=clock)
    with running_bot(core, clock, fake_slack) as harness:
        request_id = ask_for_access(harness, user=CAROL)  # a lead asking for herself
        harness.click(CAROL, APPROVE_ACTION, request_id)
        refusal = harness.answer_to(CAROL, containing="own request")
        assert f"You cannot approve your own request #{request_id}" in refusal
        assert refusals(harness, "carol") == 1
        assert buttons(harness.card(request_id).blocks)  # still pending, still decidable
    core.store.engine.dispose()


def test_first_of_two_approvals_redraws_the_card_with_who_approved(
    demo_config: AppConfig, sqlite_url: str, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    demo = demo_config.workspaces["demo"]
    two_approvers = demo.model_copy(
        update={
            "team_leads": ["bob", "carol"],
            "data_scientists": ["alice"],
            "policy": demo.policy.model_copy(update={"two_approvers": ["access"]}),
        }
    )
    config = demo_config.model_copy(update={"workspaces": {"demo": two_approvers}})
    core = build_core(config, database_url=sqlite_url, clock=clock)
    with running_bot(core, clock, fake_slack) as harness:
        request_id = ask_for_access(harness, waiting_for="two team leads of `demo` (bob, carol)")
        card = harness.card(request_id)
        harness.click(BOB, APPROVE_ACTION, request_id)
        assert "1 of 2" in harness.answer_to(BOB, containing="is recorded")
        updated = wait_for(
            lambda: (m := harness.slack.message(CHANNEL, card.ts)).edits and m,
            what="the card to be redrawn after the first approval",
        )
        assert "approved by bob; waiting for one more team lead" in updated.all_text
        assert buttons(updated.blocks) == ["amlbot.approve", "amlbot.deny"]
    core.store.engine.dispose()


def test_a_click_on_another_workspaces_request_reveals_nothing_of_it(
    demo_config: AppConfig, sqlite_url: str, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    demo = demo_config.workspaces["demo"].model_copy(update={"data_scientists": ["carol"]})
    research = demo.model_copy(
        update={"name": "research", "channel": None, "data_scientists": ["alice"]}
    )
    config = demo_config.model_copy(update={"workspaces": {"demo": demo, "research": research}})
    core = build_core(config, database_url=sqlite_url, clock=clock)
    with running_bot(core, clock, fake_slack) as harness:
        theirs = ask_for_access(harness, user=ALICE)  # alice is in `research` only
        ours = ask_for_access(harness, user=CAROL)
        forged = harness.click_payload(CAROL, APPROVE_ACTION, theirs, harness.card(ours))
        harness.post(interactive_body(forged))
        refusal = harness.answer_to(CAROL, containing=f"#{theirs}")
        assert f"There is no request #{theirs} in a workspace you belong to" in refusal
        assert "research" not in refusal and "bob" not in refusal
        with harness.core.store.transaction() as session:
            assert session.get(RequestRow, theirs).status == "pending"
    core.store.engine.dispose()


def test_non_lead_click_is_refused_ephemerally_and_audited(harness: SlackHarness) -> None:
    request_id = ask_for_access(harness)
    harness.click(CAROL, APPROVE_ACTION, request_id)
    refusal = harness.answer_to(CAROL, containing="Only team leads")
    assert "Only team leads of `demo` (bob) can approve #1" in refusal
    posts = [p for p in harness.slack.response_posts() if p.user == CAROL]
    assert [p.response_type for p in posts] == ["ephemeral"]
    assert refusals(harness, "carol") == 1
    with harness.core.store.transaction() as session:
        assert session.get(RequestRow, request_id).status == "pending"


def test_requesters_own_click_as_non_lead_is_refused(harness: SlackHarness) -> None:
    request_id = ask_for_access(harness)
    harness.click(ALICE, APPROVE_ACTION, request_id)
    assert "Only team leads" in harness.answer_to(ALICE, containing="Only team leads")
    assert refusals(harness, "alice") == 1


def test_a_click_delivered_twice_executes_once(harness: SlackHarness) -> None:
    request_id = ask_for_access(harness)
    body = interactive_body(harness.click_payload(BOB, APPROVE_ACTION, request_id))
    assert harness.post(body).status == 200
    assert harness.post(body).status == 200
    harness.answer_to(BOB, containing="Approved")
    with harness.core.store.transaction() as session:
        grants = session.scalar(select(func.count()).select_from(GrantRow))
    assert grants == 1
    assert len([p for p in harness.slack.response_posts() if p.user == BOB]) == 1


def test_a_second_click_after_the_decision_is_answered_not_executed(
    harness: SlackHarness,
) -> None:
    request_id = ask_for_access(harness)
    card = harness.card(request_id)
    harness.click(BOB, APPROVE_ACTION, request_id, card)
    harness.answer_to(BOB, containing="Approved")
    harness.click(BOB, APPROVE_ACTION, request_id, card)  # a stale card, e.g. another client
    answer = harness.answer_to(BOB, containing="already approved")
    assert f"You already approved #{request_id}; it has been carried out" in answer
    with harness.core.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(GrantRow)) == 1


def test_a_card_posted_before_a_restart_still_works(harness: SlackHarness) -> None:
    request_id = ask_for_access(harness)
    card = harness.card(request_id)
    with restarted(harness) as again:
        again.click(BOB, APPROVE_ACTION, request_id, card)
        assert "Approved #1" in again.answer_to(BOB, containing="Approved")
