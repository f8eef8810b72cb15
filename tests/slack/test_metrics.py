"""`/metrics` of the HTTP app, scraped while the real app handles a scenario."""

from __future__ import annotations

from bot.slack.views.common import APPROVE_ACTION
from tests.slack.conftest import ALICE, BOB, SlackHarness, scrape, wait_for

ACCESS = 'access request gpu-cluster --for 2h --reason "train"'


def test_metrics_move_with_a_request_from_slack_to_its_grant(harness: SlackHarness) -> None:
    before = scrape(f"{harness.url}/metrics")
    assert before['amlbot_grants{status="active"}'] == 0
    assert before['amlbot_inbox_items{status="dead"}'] == 0

    assert harness.command(ALICE, ACCESS).status == 200
    request_id = harness.request_id(harness.answer_to(ALICE, containing="waiting"))
    harness.card(request_id)
    assert harness.command(ALICE, "frobnicate now").status == 200
    harness.answer_to(ALICE, containing="Unknown command")

    harness.click(BOB, APPROVE_ACTION, request_id)
    harness.answer_to(BOB, containing="Approved")

    def settled() -> dict[str, float] | None:
        samples = scrape(f"{harness.url}/metrics")
        done = samples.get('amlbot_requests{action="access",state="succeeded"}') == 1
        idle = samples['amlbot_inbox_items{status="pending"}'] == 0
        idle = idle and samples['amlbot_inbox_items{status="running"}'] == 0
        delivered = samples['amlbot_outbox_messages{status="pending"}'] == 0
        return samples if done and idle and delivered else None

    samples = wait_for(settled, timeout=15, what="the request done, the inbox and outbox empty")
    assert samples['amlbot_commands_total{command="access request",outcome="ok"}'] == 1
    assert samples['amlbot_commands_total{command="invalid",outcome="refused"}'] == 1
    assert samples['amlbot_commands_total{command="approve",outcome="ok"}'] == 1
    assert samples['amlbot_grants{status="active"}'] == 1
    assert samples["amlbot_inbox_oldest_age_seconds"] == 0
    assert samples['amlbot_slack_ack_seconds_count{handler="slack.run_command"}'] == 2
    handled = samples['amlbot_inbox_items_handled_total{handler="slack.run_command",outcome="ok"}']
    assert handled == 2
    assert samples['amlbot_inbox_reply_seconds_count{handler="slack.run_command"}'] == 2
    assert samples['amlbot_slack_api_calls_total{method="chat.postMessage",status="ok"}'] >= 1
    assert samples['amlbot_slack_api_calls_total{method="chat.update",status="ok"}'] >= 1
    assert samples["amlbot_sweep_last_success_timestamp_seconds"] > 0
    assert samples["amlbot_sweep_duration_seconds_count"] >= 1
