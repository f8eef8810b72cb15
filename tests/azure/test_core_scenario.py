"""The core scenario, end to end, with `backend: azure` against the fake over TLS; and a
revocation Azure answers 503 (through the SDK's own retries), finished by the next round."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from approvals.config import DEMO_CONFIG_PATH, AppConfig
from approvals.grants import RETRY_LEASE
from approvals.tables import GrantRow, OutboxRow
from bot.wiring import Core
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_arm_state import BUILTIN_ROLES
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure import make_azure_workspace
from workspaces.azure.backend import AzureWorkspace
from workspaces.clock import ManualClock
from workspaces.types import AzureCoordinates

ENV = "azureml:AzureML-sklearn-1.5@latest"
ALICE = "11111111-1111-4111-8111-111111111111"  # alice's object_id in the demo config


@pytest.fixture
def azure_core(
    fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str
) -> tuple[Core, AzureCoordinates]:
    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8"))
    demo = raw["workspaces"]["demo"]
    demo["backend"] = "azure"
    raw["cloud"] = fake.cloud_config().model_dump()
    config = AppConfig.model_validate(raw)
    coords = config.workspaces["demo"].azure
    fake.add_workspace(coords.subscription_id, coords.resource_group, coords.workspace_name)
    fake.add_cluster(coords, "gpu-cluster", max_nodes=2, priority="LowPriority")
    fake.add_cluster(coords, "cpu-cluster", min_nodes=1, max_nodes=4, current_nodes=1)
    fake.add_principal(ALICE)
    core = make_core(config, sqlite_url)
    backend = make_azure_workspace(
        config.workspaces["demo"].azure_settings(),
        config.cloud,
        FakeCredential(),
        **fake.backend_options(),
    )
    core.backends.install("demo", backend)
    return core, coords


def test_grant_job_and_revocation_reach_azure(
    azure_core: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, coords = azure_core

    asked = core.service.handle_text(
        "alice", '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'
    )
    assert asked.ok, asked.text
    approved = core.service.handle_text("bob", f"/aml approve {asked.request_id}")

    assert approved.ok, approved.text
    [grant] = fake.calls_to("PUT", "roleAssignments/")
    assert grant.path.startswith(coords.compute_scope("gpu-cluster") + "/providers/")
    assert grant.body["properties"]["principalId"] == ALICE
    assert grant.body["properties"]["roleDefinitionId"].endswith(
        BUILTIN_ROLES["AzureML Data Scientist"]
    )

    submitted = core.service.handle_text(
        "alice",
        f'/aml job submit --compute gpu-cluster --environment {ENV} --command "python train.py"',
    )

    assert submitted.ok, submitted.text
    [job] = fake.calls_to("PUT", "/jobs/")
    assert job.body["properties"]["tags"]["amlbot-requester"] == "alice"
    assert job.body["properties"]["environmentId"] == ENV

    clock.advance(timedelta(hours=3))
    core.service.workflow.revoke_expired_grants()

    [revoke] = fake.calls_to("DELETE", "roleAssignments/")
    assert revoke.path == grant.path
    assert fake.assignments() == []


def test_lead_registers_an_identity_based_datastore(
    azure_core: tuple[Core, AzureCoordinates], fake: FakeAzure
) -> None:
    core, _ = azure_core

    reply = core.service.handle_text(
        "bob",
        "/aml datastore register trainingdata --kind blob --account contosodata "
        "--container training",
    )

    assert reply.ok, reply.text
    [put] = fake.calls_to("PUT", "/datastores/trainingdata$")
    assert put.body["properties"]["credentials"] == {"credentialsType": "None"}


def test_the_bot_builds_its_own_backend_with_default_azure_credential(
    fake: FakeAzure,
    make_core: Callable[..., Core],
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["workspaces"]["demo"]["backend"] = "azure"
    raw["cloud"] = fake.cloud_config().model_dump()
    config = AppConfig.model_validate(raw)
    coords = config.workspaces["demo"].azure
    fake.add_workspace(coords.subscription_id, coords.resource_group, coords.workspace_name)
    fake.add_cluster(coords, "gpu-cluster", max_nodes=2, current_nodes=1)
    for variable in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in fake.managed_identity_env().items():
        monkeypatch.setenv(variable, value)
    core = make_core(config, sqlite_url)

    reply = core.service.handle_text("bob", "/aml compute list")

    assert reply.ok, reply.text
    assert "gpu-cluster" in reply.text
    assert fake.calls_to("GET", "/msi/token$")


def test_a_delete_azure_answers_503_is_retried_by_the_next_sweep_round(
    azure_core: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, _ = azure_core
    assert core.service.handle_text(
        "alice", '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'
    ).ok
    assert core.service.handle_text("bob", "/aml approve 1").ok
    backend = core.backends("demo")
    assert isinstance(backend, AzureWorkspace)
    fake.fail("DELETE", "roleAssignments/", 503, times=1 + backend.retry_settings.retries)
    clock.advance(timedelta(hours=2))

    assert core.service.workflow.revoke_expired_grants() == []
    with core.store.transaction() as session:
        stuck = session.scalars(select(GrantRow)).one()
    assert stuck.status == "revoking" and stuck.revoke_error
    assert len(fake.assignments()) == 1

    clock.advance(RETRY_LEASE)
    assert core.service.workflow.revoke_expired_grants() == [stuck.id]

    assert fake.assignments() == []
    with core.store.transaction() as session:
        assert session.scalars(select(GrantRow)).one().status == "revoked"
        told = [
            r
            for r in session.scalars(select(OutboxRow))
            if r.payload.get("person") == "alice" and "was revoked" in str(r.payload.get("text"))
        ]
    assert len(told) == 1
