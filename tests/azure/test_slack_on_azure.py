"""The Slack edge with `backend: azure`: a signed slash command, a lead's click on the
card and the expiry sweep, each reaching the fake Azure Resource Manager over TLS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from approvals.config import DEMO_CONFIG_PATH, parse_config
from approvals.scheduled import run_due
from bot.slack.views.common import APPROVE_ACTION
from bot.wiring import Core
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_arm_state import BUILTIN_ROLES
from tests.fakes.azure_credential import FakeCredential
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_signing import interactive_body
from tests.slack.conftest import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CHANNEL,
    USERS,
    SlackHarness,
    running_bot,
    wait_for,
)
from workspaces.azure import make_azure_workspace
from workspaces.clock import ManualClock
from workspaces.types import AzureCoordinates

ALICE_OBJECT_ID = "11111111-1111-4111-8111-111111111111"  # alice's object_id in the demo
ACCESS = 'access request gpu-cluster --for 2h --reason "fine-tune BERT"'


@pytest.fixture
def azure_coords(fake: FakeAzure) -> AzureCoordinates:
    coords = fake.add_workspace(
        "00000000-0000-4000-8000-000000000000", "rg-amlbot-demo", "mlw-demo"
    )
    fake.add_cluster(coords, "gpu-cluster", max_nodes=2, priority="LowPriority")
    fake.add_cluster(coords, "cpu-cluster", vm_size="STANDARD_DS3_V2", min_nodes=1, current_nodes=1)
    fake.add_principal(ALICE_OBJECT_ID)
    return coords


@pytest.fixture
def azure_core(
    fake: FakeAzure,
    azure_coords: AzureCoordinates,
    make_core: Callable[..., Core],
    sqlite_url: str,
) -> Core:
    text = DEMO_CONFIG_PATH.read_text(encoding="utf-8").replace("backend: local", "backend: azure")
    cloud = fake.cloud_config()
    text += (
        f"\ncloud:\n  name: custom\n  resource_manager: {cloud.resource_manager}\n"
        f"  active_directory: {cloud.active_directory}\n  studio: {cloud.studio}\n"
    )
    config = parse_config(text, "azure demo")
    ws = config.workspaces["demo"]
    assert ws.backend == "azure" and ws.azure == azure_coords
    core = make_core(config, sqlite_url)
    core.backends.install(
        "demo",
        make_azure_workspace(
            ws.azure_settings(), config.cloud, FakeCredential(), **fake.backend_options()
        ),
    )
    return core


@pytest.fixture
def harness(azure_core: Core, clock: ManualClock) -> Iterator[SlackHarness]:
    with (
        FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack,
        running_bot(azure_core, clock, slack) as running,
    ):
        yield running


def ask_for_access(harness: SlackHarness) -> int:
    assert harness.command(ALICE, ACCESS).status == 200
    return harness.request_id(harness.answer_to(ALICE, containing="is waiting for a team lead"))


def approve(harness: SlackHarness, request_id: int) -> None:
    body = interactive_body(harness.click_payload(BOB, APPROVE_ACTION, request_id))
    assert harness.post(body).status == 200
    harness.answer_to(BOB, containing="Approved")


def has_buttons(card: Message) -> bool:
    return any(block["type"] == "actions" for block in card.blocks)


def test_slash_command_posts_a_card_and_changes_nothing_in_azure(
    harness: SlackHarness, fake: FakeAzure
) -> None:
    request_id = ask_for_access(harness)

    card = harness.card(request_id)
    assert "gpu-cluster" in card.all_text and "AzureML Data Scientist" in card.all_text
    assert has_buttons(card)
    assert fake.calls_to("PUT", "roleAssignments/") == []


def test_approve_click_puts_the_role_assignment_and_updates_the_card_in_place(
    harness: SlackHarness, fake: FakeAzure, azure_coords: AzureCoordinates
) -> None:
    request_id = ask_for_access(harness)
    card = harness.card(request_id)

    approve(harness, request_id)

    # The card passes through "being carried out" while Azure is called, then says done.
    def done() -> Message | None:
        message = harness.slack.message(CHANNEL, card.ts)
        return message if "done" in message.text else None

    updated = wait_for(done, what="the card to say done")
    assert updated.edits >= 1 and not has_buttons(updated)
    assert "approved by bob" in updated.all_text
    assert [
        m.ts
        for m in harness.slack.messages_in(CHANNEL)
        if m.thread_ts is None and m.text.startswith("#1 ")
    ] == [card.ts]
    [grant] = fake.calls_to("PUT", "roleAssignments/")
    assert grant.path.startswith(azure_coords.compute_scope("gpu-cluster") + "/providers/")
    assert grant.body["properties"]["principalId"] == ALICE_OBJECT_ID
    assert grant.body["properties"]["roleDefinitionId"].endswith(
        BUILTIN_ROLES["AzureML Data Scientist"]
    )
    harness.dm_to(ALICE, "alice has access to `gpu-cluster`")


def test_a_click_delivered_twice_puts_one_role_assignment(
    harness: SlackHarness, fake: FakeAzure
) -> None:
    request_id = ask_for_access(harness)
    body = interactive_body(harness.click_payload(BOB, APPROVE_ACTION, request_id))

    assert harness.post(body).status == 200
    assert harness.post(body).status == 200

    harness.answer_to(BOB, containing="Approved")
    harness.dm_to(ALICE, "alice has access to `gpu-cluster`")
    assert len(fake.calls_to("PUT", "roleAssignments/")) == 1
    assert len(fake.assignments()) == 1
    assert len([p for p in harness.slack.response_posts() if p.user == BOB]) == 1


def test_expiry_sweep_deletes_the_assignment_and_tells_alice(
    harness: SlackHarness, fake: FakeAzure, clock: ManualClock
) -> None:
    approve(harness, ask_for_access(harness))
    [grant] = fake.calls_to("PUT", "roleAssignments/")

    clock.advance(timedelta(hours=3))
    run_due(harness.core, harness.core.service.workflow, clock.now())
    harness.wake_outbox()

    # The bot's own scheduler may run the same round; either way Azure sees one DELETE.
    wait_for(lambda: fake.calls_to("DELETE", "roleAssignments/"), what="the DELETE")
    [revoke] = fake.calls_to("DELETE", "roleAssignments/")
    assert revoke.path == grant.path
    assert fake.assignments() == []
    notice = harness.dm_to(ALICE, "was revoked")
    assert "Your access to `gpu-cluster` in `demo`" in notice.all_text
