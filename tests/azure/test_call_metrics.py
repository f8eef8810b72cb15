"""Every HTTP attempt the Azure SDKs and our own pipelines send is counted by operation and
status (429s and retries included) and logged with Azure's `x-ms-request-id`: the pipeline
policy in `workspaces/azure/telemetry.py`, against the fake Azure Resource Manager."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure.backend import AzureWorkspace
from workspaces.azure.retry import RetrySettings
from workspaces.azure.telemetry import operation_name
from workspaces.types import AzureCoordinates, JobSpec, RoleGrantSpec

ALICE_OBJECT_ID = "a11ce000-0000-4000-8000-000000000001"
COMPUTES_READ = "Microsoft.MachineLearningServices/workspaces/computes/read"
ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"
JOBS_WRITE = "Microsoft.MachineLearningServices/workspaces/jobs/write"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def counted(
    fake: FakeAzure,
    coords: AzureCoordinates,
    credential: FakeCredential,
    sleeps: list[float],
    retry: RetrySettings,
    metrics: Metrics,
) -> AzureWorkspace:
    return AzureWorkspace(
        coords,
        credential,
        fake.cloud_config(),
        connection_verify=fake.ca_bundle,
        graph_endpoint=fake.base_url,
        retry=retry,
        sleep=sleeps.append,
        on_azure_call=metrics.count_azure_call,
    )


def scraped(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, as `/metrics` serves it."""
    samples = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests(metrics: Metrics, operation: str, status: str) -> float:
    key = ("amlbot_azure_requests_total", (("operation", operation), ("status", status)))
    return scraped(metrics).get(key, 0.0)


def retries(metrics: Metrics, operation: str) -> float:
    key = ("amlbot_azure_retries_total", (("operation", operation),))
    return scraped(metrics).get(key, 0.0)


def test_a_throttled_call_counts_the_429_the_retry_and_the_success(
    counted: AzureWorkspace, fake: FakeAzure, metrics: Metrics
) -> None:
    fake.fail("GET", "/computes$", 429, times=2, retry_after=1)

    counted.list_computes()

    sent = len(fake.calls_to("GET", "/computes$"))
    assert sent == 3
    assert requests(metrics, COMPUTES_READ, "429") == 2
    assert requests(metrics, COMPUTES_READ, "200") == 1
    assert retries(metrics, COMPUTES_READ) == 2
    duration = ("amlbot_azure_request_duration_seconds_count", (("operation", COMPUTES_READ),))
    assert scraped(metrics)[duration] == sent


def test_the_authorization_and_ml_sdk_clients_are_counted_too(
    counted: AzureWorkspace, fake: FakeAzure, metrics: Metrics
) -> None:
    fake.fail("PUT", "/roleAssignments/", 503, times=1)
    counted.grant_cluster_access(
        RoleGrantSpec(
            assignment_name="5e1f2b7c-0000-4000-8000-000000000007",
            principal_object_id=ALICE_OBJECT_ID,
            role_name="AzureML Data Scientist",
            compute="gpu",
            scope="compute",
            description="amlbot request #7 for alice",
            expires_at=datetime(2030, 1, 5, 13, 0, tzinfo=UTC),
        )
    )
    counted.submit_job(
        JobSpec(name="j1", compute="gpu", environment="AzureML-sklearn-1.5", command="echo")
    )

    assert requests(metrics, ASSIGNMENT_WRITE, "503") == 1
    assert (
        requests(metrics, ASSIGNMENT_WRITE, "201") + requests(metrics, ASSIGNMENT_WRITE, "200") == 1
    )
    assert retries(metrics, ASSIGNMENT_WRITE) == 1
    assert sum(requests(metrics, JOBS_WRITE, status) for status in ("200", "201")) == 1
    assert retries(metrics, JOBS_WRITE) == 0


def test_each_call_is_logged_with_azures_request_id_and_no_url(
    counted: AzureWorkspace,
    fake: FakeAzure,
    caplog: pytest.LogCaptureFixture,
    coords: AzureCoordinates,
) -> None:
    caplog.set_level(logging.INFO, logger="amlbot.azure")
    fake.fail("GET", "/computes$", 429, times=1, retry_after=1)

    counted.list_computes()

    logged = [r.getMessage() for r in caplog.records if r.name == "amlbot.azure"]
    assert fake.calls, "the fake saw no call"
    for call in fake.calls:
        assert any(f"x-ms-request-id {call.request_id}" in line for line in logged), call.path
    throttled = next(line for line in logged if ": 429 " in line)
    assert throttled.startswith(f"Azure GET {COMPUTES_READ}: 429 in ")
    assert "attempt 1" in throttled
    assert not any(coords.subscription_id in line or "https://" in line for line in logged)


def test_a_connection_that_fails_is_counted_by_the_exception(
    fake: FakeAzure,
    coords: AzureCoordinates,
    credential: FakeCredential,
    sleeps: list[float],
    metrics: Metrics,
) -> None:
    unreachable = AzureWorkspace(
        coords,
        credential,
        fake.cloud_config(),
        connection_verify="/nonexistent/ca.pem",  # TLS cannot be set up: no answer at all
        retry=RetrySettings(retries=1),
        sleep=sleeps.append,
        on_azure_call=metrics.count_azure_call,
    )

    with pytest.raises(Exception):  # noqa: B017 - the translation is not what is tested
        unreachable.clients.arm().request("GET", coords.workspace_scope + "/computes")

    failed = {
        labels: value
        for (name, labels), value in scraped(metrics).items()
        if name == "amlbot_azure_requests_total"
    }
    assert failed and all(not dict(labels)["status"].isdigit() for labels in failed)


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        (
            "POST",
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices"
            "/workspaces/w/computes/ci-alice/stop",
            "Microsoft.MachineLearningServices/workspaces/computes/stop/action",
        ),
        (
            "DELETE",
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices"
            "/workspaces/w/computes/gpu/providers/Microsoft.Authorization/roleAssignments/x",
            "Microsoft.Authorization/roleAssignments/delete",
        ),
        (
            "GET",
            "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions",
            "Microsoft.Authorization/roleDefinitions/read",
        ),
        ("GET", "/v1.0/users/alice@contoso.example", "arm/read"),
    ],
)
def test_operations_are_named_by_resource_type_never_by_name(
    method: str, path: str, operation: str
) -> None:
    assert operation_name(method, "https://management.azure.com" + path) == operation
