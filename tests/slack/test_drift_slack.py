"""The drift report through the real Bolt app and the fake Slack: one message in the
workspace's channel with a button per finding; a lead's click fixes it as an audited
request, answers with the read-back, and redraws the report."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.notify.slack_drift import DRIFT_FIX_ACTION
from tests.fakes.slack_api import Message
from tests.slack.conftest import ALICE, BOB, CHANNEL, SlackHarness, wait_for
from workspaces.local import LocalWorkspace
from workspaces.types import RoleGrantSpec

STRAY = "9f0e1d2c-3b4a-4596-8877-665544332211"


def report_in_channel(harness: SlackHarness) -> Message:
    return wait_for(
        lambda: next(
            (m for m in harness.slack.messages_in(CHANNEL) if "Drift check of demo" in m.text),
            None,
        ),
        what="the drift report in the channel",
    )


def test_the_report_has_a_button_per_finding_and_a_click_fixes_it(harness: SlackHarness) -> None:
    backend = harness.core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    backend.grant_cluster_access(
        RoleGrantSpec(
            assignment_name=STRAY,
            principal_object_id="33333333-3333-4333-8333-333333333333",
            role_name="AzureML Data Scientist",
            compute="gpu-cluster",
            scope="compute",
            description="made in the portal",
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        )
    )
    assert harness.command(BOB, "drift check").status == 200
    harness.answer_to(BOB, containing="Drift found in `demo`")
    report = report_in_channel(harness)
    buttons = [
        element
        for block in report.blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]
    assert [(b["action_id"], b["text"]["text"]) for b in buttons] == [
        (DRIFT_FIX_ACTION, "Revoke it")
    ]
    finding_id = int(buttons[0]["value"])

    assert harness.click(ALICE, DRIFT_FIX_ACTION, finding_id, card=report).status == 200
    assert "Only team leads of `demo`" in harness.answer_to(ALICE, containing="team leads")
    assert backend.role_assignments() != []

    assert harness.click(BOB, DRIFT_FIX_ACTION, finding_id, card=report).status == 200
    assert "the assignment is gone" in harness.answer_to(BOB, containing="Read back")
    assert backend.role_assignments() == []
    wait_for(
        lambda: (
            m
            if "fixed by bob" in (m := harness.slack.message(CHANNEL, report.ts)).all_text
            else None
        ),
        what="the report redrawn with the fix",
    )
