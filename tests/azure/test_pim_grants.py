"""A PIM grant through the bot against the fake Azure: PIM's audit carries the requester's
reason, and the card and the revoke reply say what PIM does, not what plain RBAC does."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.wiring import Core
from tests.azure.test_grant_extension import azure_core, demo_on_azure, granted
from tests.fakes.azure_arm import FakeAzure
from workspaces.clock import ManualClock


@pytest.fixture
def pim_core(
    fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str, clock: ManualClock
) -> Core:
    fake.now = clock.now
    return azure_core(fake, make_core(demo_on_azure(fake, mode="pim"), sqlite_url))


def test_the_schedule_requests_justification_carries_the_reason(
    pim_core: Core, fake: FakeAzure
) -> None:
    granted(pim_core)

    [assign] = fake.calls_to("PUT", "roleAssignmentScheduleRequests/")
    justification = assign.body["properties"]["justification"]
    assert justification.startswith('amlbot request #1 for alice: "fine-tune BERT"; expires ')


def test_the_card_and_the_revoke_reply_speak_of_pim(pim_core: Core) -> None:
    asked = pim_core.service.handle_text(
        "alice", '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'
    )
    card = pim_core.service.handle_text("bob", f"/aml request show {asked.request_id}").text
    assert "active PIM role assignment (AdminAssign)" in card
    assert "AdminRemove" in card and "create a role assignment" not in card

    assert pim_core.service.handle_text("bob", f"/aml approve {asked.request_id}").ok
    revoked = pim_core.service.handle_text("alice", "/aml access revoke 1")
    assert revoked.ok, revoked.text
    assert "AdminRemove request" in revoked.text and "is deleted" not in revoked.text
