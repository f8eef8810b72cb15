"""Throttling and transient failures are retried within a bound; the rest read as advice."""

from __future__ import annotations

import pytest

from shared.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
)
from shared.values import DatastoreKind
from tests.fakes.azure_arm import FakeAzure
from workspaces.azure.backend import AzureWorkspace
from workspaces.types import AzureCoordinates, DatastoreSpec, JobSpec


def test_throttled_call_waits_as_long_as_azure_asks_then_succeeds(
    backend: AzureWorkspace, fake: FakeAzure, sleeps: list[float]
) -> None:
    fake.fail("GET", "/computes$", 429, times=2, retry_after=7)

    inventory = backend.list_computes()

    assert inventory.cluster("gpu") is not None
    assert sleeps == [7.0, 7.0]
    assert len(fake.calls_to("GET", "/computes$")) == 3


def test_unavailable_service_is_retried_with_backoff(
    backend: AzureWorkspace, fake: FakeAzure, sleeps: list[float]
) -> None:
    fake.fail("GET", "/computes$", 503, times=3)

    backend.list_computes()

    assert len(sleeps) >= 2
    assert sleeps == sorted(sleeps)  # backing off, not hammering


def test_retries_are_bounded_and_end_in_a_transient_error(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    fake.fail("GET", "/computes$", 503, times=100)

    with pytest.raises(TransientError, match="temporary failure") as caught:
        backend.list_computes()

    assert caught.value.retryable
    assert len(fake.calls_to("GET", "/computes$")) == 1 + backend.retry_settings.retries


def test_retry_after_beyond_the_bound_gives_up_at_once(
    backend: AzureWorkspace, fake: FakeAzure, sleeps: list[float]
) -> None:
    fake.fail("PUT", "/datastores/", 429, retry_after=3600)

    with pytest.raises(TransientError, match="3600 s; nothing was changed"):
        backend.register_datastore(
            DatastoreSpec(name="raw", kind=DatastoreKind.BLOB, account="st", container="raw")
        )

    assert sleeps == []


def test_throttled_job_submission_is_retried_through_the_sdk(
    backend: AzureWorkspace, fake: FakeAzure, sleeps: list[float]
) -> None:
    fake.fail("PUT", "/jobs/", 429, retry_after=2)

    backend.submit_job(
        JobSpec(name="j1", compute="gpu", environment="AzureML-sklearn-1.5", command="echo")
    )

    assert sleeps == [2.0]
    assert len(fake.calls_to("PUT", "/jobs/")) == 2


def test_forbidden_names_the_permission_the_bot_lacks(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.deny("Microsoft.MachineLearningServices/workspaces/computes/read")

    with pytest.raises(PermissionDeniedError) as caught:
        backend.list_computes()

    assert "`Microsoft.MachineLearningServices/workspaces/computes/read`" in caught.value.message
    assert coords.workspace_scope in caught.value.message


def test_missing_workspace_is_named(fake: FakeAzure, backend: AzureWorkspace) -> None:
    fake.workspaces.clear()

    with pytest.raises(NotFoundError, match="workspaces/mlw-team"):
        backend.list_computes()


def test_conflict_says_what_conflicts(backend: AzureWorkspace, fake: FakeAzure) -> None:
    fake.fail(
        "PUT",
        "/jobs/",
        409,
        code="Conflict",
        message="A job named j1 is being created by another request.",
    )

    with pytest.raises(ConflictError, match="job named j1 is being created"):
        backend.submit_job(
            JobSpec(name="j1", compute="gpu", environment="AzureML-sklearn-1.5", command="echo")
        )
