"""The idle sweep over many workspaces against the fake ARM with Azure-like latency, the bot
building its own clients as in production: one compute list per workspace plus its pages,
one token for them all (DefaultAzureCredential at the fake's managed identity), one digest
per workspace, the workspaces side by side, and a workspace Azure throttles delays only
itself. (bench/sweeps.py measures the same at 50 workspaces and prints the figures.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import yaml

from approvals import scheduled as sweeps
from approvals.config import DEMO_CONFIG_PATH, AppConfig
from approvals.idle import digest as idle_sweep
from approvals.scheduled import run_due
from bot.wiring import Core
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_arm_auth import MSI_PATH
from workspaces.clock import ManualClock

WORKSPACES = 10
CLUSTERS, INSTANCES = 150, 50  # 200 computes: four pages of 50
LATENCY = 0.045
SUBSCRIPTION = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    with FakeAzure(page_size=50) as started:
        for key, value in started.managed_identity_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")
        yield started


@pytest.fixture
def many(fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str) -> Core:
    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8"))
    demo = raw["workspaces"].pop("demo")
    # Only the idle sweep and job polls here: the nightly drift check (due at 02:00, and the
    # clock says 09:00) would list each workspace's computes a second time.
    raw["defaults"]["policy"]["drift"]["enabled"] = False
    for n in range(WORKSPACES):
        ws = yaml.safe_load(yaml.safe_dump(demo))
        ws["backend"] = "azure"
        ws["azure"] = {
            "subscription_id": SUBSCRIPTION,
            "resource_group": "rg-scale",
            "workspace_name": f"mlw-{n:02d}",
        }
        raw["workspaces"][f"ws{n:02d}"] = ws
        coords = fake.add_workspace(SUBSCRIPTION, "rg-scale", f"mlw-{n:02d}")
        for c in range(CLUSTERS):
            fake.add_cluster(coords, f"c{c:03d}", vm_size="Standard_DS3_v2", min_nodes=int(c < 2))
        for i in range(INSTANCES):
            fake.add_instance(coords, f"i{i:03d}", idle_before_shutdown="PT30M")
    raw["cloud"] = fake.cloud_config().model_dump()
    # No backend is installed: the bot makes its own, with DefaultAzureCredential.
    return make_core(AppConfig.model_validate(raw), sqlite_url)


def test_one_list_per_workspace_one_token_one_digest_each(
    many: Core, fake: FakeAzure, clock: ManualClock
) -> None:
    fake.latency = LATENCY
    fake.calls.clear()
    report = run_due(many, many.service.workflow, clock.now())

    assert len(report.digests) == WORKSPACES and report.failed == []
    lists = fake.calls_to("GET", r"/computes$")
    assert len([c for c in lists if "$skipToken" not in c.query]) == WORKSPACES
    assert len(lists) == WORKSPACES * 4  # and three more pages each, nothing per compute
    assert len(fake.calls_to("GET", f"^{MSI_PATH}$")) == 1  # one token for every workspace
    assert len(fake.calls) == len(lists) + 1


def test_a_throttled_workspace_delays_only_itself(
    many: Core, fake: FakeAzure, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.latency = LATENCY
    fake.fail("GET", "/workspaces/mlw-03/computes$", 429, retry_after=3)
    finished: dict[str, float] = {}
    lock = threading.Lock()
    sweep = idle_sweep.sweep_idle

    def timed(core: Core, workspace: str, now: datetime) -> int | None:
        try:
            return sweep(core, workspace, now)
        finally:
            with lock:
                finished[workspace] = time.perf_counter()

    monkeypatch.setattr(sweeps, "sweep_idle", timed)
    started = time.perf_counter()
    report = run_due(many, many.service.workflow, clock.now())

    assert len(report.digests) == WORKSPACES  # the throttled one too, after its wait
    waited = finished.pop("ws03") - started
    assert waited >= 3.0
    assert max(finished.values()) - started < waited  # nobody waited behind it
