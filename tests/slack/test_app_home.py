"""App Home: everyone sees their pending requests, grants with time left and recent
jobs; leads also see what waits for them, with buttons that work from there."""

from __future__ import annotations

from bot.slack.views.common import APPROVE_ACTION
from tests.fakes.slack_signing import block_actions_payload, interactive_body
from tests.slack.conftest import ALICE, BOB, SlackHarness, wait_for

ACCESS = 'access request gpu-cluster --for 2h --reason "fine-tune BERT"'


def home_text(harness: SlackHarness, user: str, containing: str) -> dict:
    def find() -> dict | None:
        view = harness.slack.home_view(user)
        return view.view if view and containing in str(view.view) else None

    # Up to 15 s: an approval from Home is carried out end to end (inbox, worker, workspace,
    # outbox) before its outcome shows, and the full suite shares two cores.
    return wait_for(find, timeout=15, what=f"{user}'s Home showing {containing!r}")


def test_lead_sees_requests_waiting_with_buttons(harness: SlackHarness) -> None:
    harness.command(ALICE, ACCESS)
    harness.answer_to(ALICE, containing="waiting")
    harness.open_home(BOB)
    home = home_text(harness, BOB, "Waiting for your decision")
    assert "#1 access to gpu-cluster for 2h" in str(home)
    actions = [b for b in home["blocks"] if b["type"] == "actions"]
    assert [e["value"] for e in actions[0]["elements"]] == ["1", "1"]


def test_member_sees_pending_requests_grants_and_jobs(harness: SlackHarness) -> None:
    harness.command(ALICE, ACCESS)
    harness.answer_to(ALICE, containing="waiting")
    harness.open_home(ALICE)
    home = home_text(harness, ALICE, "Your pending requests")
    assert "#1 access to gpu-cluster for 2h" in str(home)
    assert "Waiting for your decision" not in str(home)
    harness.core.service.handle_text("bob", "/aml approve 1")
    harness.open_home(ALICE)
    home = home_text(harness, ALICE, "left)")
    assert "alice* on `gpu-cluster`" in str(home) and "2h left" in str(home)


def test_approving_from_home_executes_and_shows_the_outcome_there(harness: SlackHarness) -> None:
    harness.command(ALICE, ACCESS)
    harness.answer_to(ALICE, containing="waiting")
    harness.open_home(BOB)
    home_text(harness, BOB, "Waiting for your decision")
    payload = block_actions_payload(
        action_id=APPROVE_ACTION,
        user_id=BOB,
        value="1",
        block_id="home-decide-1",
        response_url="",
    )
    payload.pop("response_url")
    payload.pop("message")
    payload.pop("channel")
    payload["container"] = {"type": "view", "view_id": harness.slack.home_view(BOB).id}
    payload["view"] = {"id": harness.slack.home_view(BOB).id, "type": "home"}
    assert harness.post(interactive_body(payload)).status == 200
    home = home_text(harness, BOB, "Approved #1")
    assert "Nothing is waiting for you" in str(home)
