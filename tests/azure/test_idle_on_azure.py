"""The idle digest with `backend: azure`, against the fake ARM: Azure reports when an instance
started and its idle shutdown setting, never its activity, so the digest says how long an
instance has run and how it is set up, and never that it was inactive. "Set idle shutdown"
reaches Azure's `updateIdleShutdownSetting` (a lead at once, anyone else by request)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import yaml

from approvals.config import DEMO_CONFIG_PATH, AppConfig
from approvals.idle.actions import act_on_item
from approvals.idle.digest import digest_items, sweep_idle
from approvals.notice_kinds import IDLE_DIGEST
from bot.slack.views.notices import IDLE_FIX_ACTION, IDLE_SHUTDOWN_ACTION, idle_digest_message
from bot.wiring import Core
from shared.errors import WorkspaceError
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from tests.notify.conftest import notices
from workspaces.azure import make_azure_workspace
from workspaces.clock import ManualClock
from workspaces.prices import BOOK, PriceQuote
from workspaces.types import AzureCoordinates

HOUR = timedelta(hours=1)


def started(fake: FakeAzure, coords: AzureCoordinates, name: str, at: datetime) -> None:
    inner = fake.compute(coords, name)["properties"]["properties"]
    inner["lastOperation"] = {
        "operationName": "Start",
        "operationTime": at.isoformat(),
        "operationStatus": "Succeeded",
        "operationTrigger": "User",
    }


@pytest.fixture
def azure_core(
    fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str, clock: ManualClock
) -> tuple[Core, AzureCoordinates]:
    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["workspaces"]["demo"]["backend"] = "azure"
    raw["cloud"] = fake.cloud_config().model_dump()
    config = AppConfig.model_validate(raw)
    coords = config.workspaces["demo"].azure
    fake.add_workspace(coords.subscription_id, coords.resource_group, coords.workspace_name)
    fake.add_cluster(coords, "cpu-cluster", min_nodes=0, max_nodes=4)
    # Working in a notebook for 3 hours, no idle shutdown: Azure cannot tell it is in use.
    fake.add_instance(
        coords, "alice-notebook", vm_size="Standard_DS11_v2", idle_before_shutdown=None
    )
    started(fake, coords, "alice-notebook", clock.now() - 3 * HOUR)
    # Running as long, but Azure stops it after 30 idle minutes: nothing to report.
    fake.add_instance(coords, "bob-notebook", idle_before_shutdown="PT30M")
    started(fake, coords, "bob-notebook", clock.now() - 3 * HOUR)
    fake.add_instance(coords, "carol-notebook", state="Stopped", idle_before_shutdown=None)
    core = make_core(config, sqlite_url)
    backend = make_azure_workspace(
        config.workspaces["demo"].azure_settings(),
        config.cloud,
        FakeCredential(),
        **fake.backend_options(),
    )
    core.backends.install("demo", backend)
    BOOK.install(
        [PriceQuote("Standard_DS11_v2", "eastus", False, 0.21, "retail", clock.now().date())]
    )
    return core, coords


def test_the_digest_says_how_long_an_instance_runs_and_never_that_it_is_inactive(
    azure_core: tuple[Core, AzureCoordinates], clock: ManualClock
) -> None:
    core, _ = azure_core
    digests = []
    for _ in range(3):  # at first and later sweeps alike
        digest = sweep_idle(core, "demo", clock.now())
        if digest is not None:
            digests.append(digest)
        clock.advance(5 * HOUR)
    texts = [payload["text"] for payload in notices(core, IDLE_DIGEST)]
    assert len(texts) == len(digests) >= 2
    assert texts[0].splitlines() == [
        "Idle compute in `demo`: 1 item, ~$0.21/hour",
        "• Compute instance `alice-notebook` (Standard_DS11_v2): running for 3h (since Start "
        "at 2026-01-05 06:00 UTC); no idle shutdown is set; no job the bot follows runs on it. "
        "~$0.21/hour, ~$0.63 so far",
        "Prices: Retail Prices, fetched today, eastus (estimates).",
    ]
    for text in texts:
        assert "activity" not in text and "idle since" not in text
        assert "bob-notebook" not in text and "carol-notebook" not in text
    (item,) = digest_items(core, digests[0])
    blocks = idle_digest_message("demo", [item]).blocks
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["text"]["text"]) for b in buttons[:2]] == [
        (IDLE_FIX_ACTION, "Stop instance"),
        (IDLE_SHUTDOWN_ACTION, "Set idle shutdown to 30 min"),
    ]


def test_a_lead_sets_idle_shutdown_in_azure_at_once_and_the_instance_drops_out(
    azure_core: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, coords = azure_core
    digest = sweep_idle(core, "demo", clock.now())
    (item,) = digest_items(core, digest) if digest else []

    reply = act_on_item(core, item.id, "bob", "idle_shutdown")

    assert reply.ok, reply.text
    (call,) = fake.calls_to("POST", "updateIdleShutdownSetting")
    assert call.path == coords.compute_scope("alice-notebook") + "/updateIdleShutdownSetting"
    assert call.body == {"idleTimeBeforeShutdown": "PT30M"}
    instance = next(
        i for i in core.backends("demo").list_computes().instances if i.name == "alice-notebook"
    )
    assert instance.idle_shutdown_minutes == 30 and instance.state == "Running"
    clock.advance(5 * HOUR)
    assert sweep_idle(core, "demo", clock.now()) is None


def test_anyone_else_asks_a_lead_to_set_idle_shutdown(
    azure_core: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, _ = azure_core
    digest = sweep_idle(core, "demo", clock.now())
    (item,) = digest_items(core, digest) if digest else []

    reply = act_on_item(core, item.id, "carol", "idle_shutdown")

    assert reply.ok and "set idle shutdown of alice-notebook to 30 min" in reply.text
    assert fake.calls_to("POST", "updateIdleShutdownSetting") == []
    assert core.service.handle_text("bob", f"approve {reply.request_id}").ok
    (call,) = fake.calls_to("POST", "updateIdleShutdownSetting")
    assert call.body == {"idleTimeBeforeShutdown": "PT30M"}


def test_an_idle_shutdown_azure_would_refuse_is_refused_naming_the_range(
    azure_core: tuple[Core, AzureCoordinates], fake: FakeAzure
) -> None:
    core, _ = azure_core
    with pytest.raises(WorkspaceError, match="between 15 and 4320 minutes"):
        core.backends("demo").set_instance_idle_shutdown("alice-notebook", 5)
    assert fake.calls_to("POST", "updateIdleShutdownSetting") == []
