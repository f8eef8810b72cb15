"""The Azure backend against a fake Azure Resource Manager over TLS, with the real SDKs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure.backend import AzureWorkspace
from workspaces.azure.retry import RetrySettings
from workspaces.types import AzureCoordinates

ALICE_OBJECT_ID = "a11ce000-0000-4000-8000-000000000001"
ALICE_EMAIL = "alice@contoso.example"


@pytest.fixture(autouse=True)
def _restore_sdk_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLClient records its cloud in os.environ (AZUREML_CURRENT_CLOUD); undo it after."""
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    with FakeAzure(page_size=50) as started:
        yield started


@pytest.fixture
def coords(fake: FakeAzure) -> AzureCoordinates:
    coords = fake.add_workspace()
    fake.add_cluster(
        coords,
        "gpu",
        min_nodes=0,
        max_nodes=4,
        current_nodes=3,
        node_state_counts={"idleNodeCount": 1, "runningNodeCount": 2},
        idle_before_scale_down="PT3M20S",
    )
    fake.add_instance(coords, "ci-alice", assigned_user_object_id=ALICE_OBJECT_ID)
    fake.add_user(ALICE_EMAIL, ALICE_OBJECT_ID)
    return coords


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()


@pytest.fixture
def sleeps() -> list[float]:
    """Every pause the retry policy took, instead of sleeping."""
    return []


@pytest.fixture
def retry() -> RetrySettings:
    return RetrySettings(polling_interval_seconds=0.01, max_retry_after_seconds=30)


@pytest.fixture
def backend(
    fake: FakeAzure,
    coords: AzureCoordinates,
    credential: FakeCredential,
    sleeps: list[float],
    retry: RetrySettings,
) -> AzureWorkspace:
    return AzureWorkspace(
        coords,
        credential,
        fake.cloud_config(),
        environments=["AzureML-sklearn-1.5@latest"],
        key_vault=fake.base_url,
        connection_verify=fake.ca_bundle,
        graph_endpoint=fake.base_url,
        retry=retry,
        sleep=sleeps.append,
    )
