"""The core's whole scenario ("Done when" of the core issue), typed and clicked in Slack."""

from __future__ import annotations

import json

from bot.slack.views.common import APPROVE_ACTION, DENY_ACTION, DENY_MODAL
from tests.slack.conftest import ALICE, BOB, CAROL, SlackHarness

ENV = "azureml:AzureML-sklearn-1.5@latest"
JOB = f'job submit --compute gpu-cluster --environment {ENV} --command "python train.py"'


def say(harness: SlackHarness, user: str, text: str, expect: str) -> str:
    before = len(harness.slack.response_posts())
    assert harness.command(user, text).status == 200
    return harness.answer_to(user, containing=expect, after=before)


def click(harness: SlackHarness, user: str, action: str, request_id: int, expect: str) -> str:
    before = len(harness.slack.response_posts())
    assert harness.click(user, action, request_id).status == 200
    return harness.answer_to(user, containing=expect, after=before)


def test_the_core_scenario_through_slack(harness: SlackHarness) -> None:
    reply = say(
        harness, ALICE, 'access request gpu-cluster --for 2h --reason "fine-tune BERT"', "waiting"
    )
    access = harness.request_id(reply)
    assert "Request #1 (access to gpu-cluster for 2h) is waiting for a team lead" in reply

    refusal = click(harness, ALICE, APPROVE_ACTION, access, "Only team leads")
    assert "Only team leads of `demo` (bob) can approve #1." in refusal

    approved = click(harness, BOB, APPROVE_ACTION, access, "Approved")
    assert "alice has access to `gpu-cluster` until" in approved
    harness.dm_to(ALICE, "Request #1 done")

    assert "grant #1: *alice* on `gpu-cluster`" in say(harness, ALICE, "access list", "grant")
    assert "submitted on `gpu-cluster`" in say(harness, ALICE, JOB, "Job")
    assert "*Your jobs in `demo`*" in say(harness, ALICE, "job list --mine", "Your jobs")
    assert "/aml access request gpu-cluster" in say(harness, CAROL, JOB, "access request")

    reply = say(
        harness,
        ALICE,
        "datastore register trainingdata --kind blob --account contosodata --container training",
        "waiting",
    )
    datastore = harness.request_id(reply)
    harness.click(BOB, DENY_ACTION, datastore)
    modal = harness.modal(DENY_MODAL)
    assert json.loads(modal["private_metadata"])["request_id"] == datastore
    values = {"reason": {"reason": {"type": "plain_text_input", "value": "use the shared lake"}}}
    harness.submit(BOB, DENY_MODAL, values, modal["private_metadata"])
    harness.dm_to(ALICE, "bob denied your request #3")

    trail = say(harness, BOB, "audit", "Audit trail")
    for action in ("access.requested", "access.approved", "access.executed", "job.executed"):
        assert action in trail
    assert "datastore.denied" in trail and "request.approve" in trail
    assert "for team leads only" in say(harness, ALICE, "audit", "team leads only")
