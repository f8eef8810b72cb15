"""Command jobs: what is PUT, what comes back, and what the bot never stamps on them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.errors import NotFoundError, WorkspaceError
from tests.fakes.azure_arm import FakeAzure
from workspaces.azure.backend import AzureWorkspace
from workspaces.azure.jobs import normalise_environment
from workspaces.types import AzureCoordinates, JobSpec, JobStatus

REQUEST_TAGS = {"amlbot": "true", "amlbot-request": "42", "amlbot-requester": "U0ALICE01"}


def job_spec(**changes: object) -> JobSpec:
    values: dict[str, object] = {
        "name": "amlbot-mlw-team-42",
        "compute": "gpu",
        "environment": "azureml:AzureML-sklearn-1.5@latest",
        "command": "python train.py --epochs 3",
        "experiment": "churn",
        "display_name": "churn baseline",
        "tags": REQUEST_TAGS,
    }
    values.update(changes)
    return JobSpec.model_validate(values)


def put_properties(fake: FakeAzure) -> dict:
    [put] = fake.calls_to("PUT", "/jobs/")
    return put.body["properties"]


def test_submit_is_a_put_of_a_command_job_with_the_requester_tags(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    info = backend.submit_job(job_spec())

    [put] = fake.calls_to("PUT", "/jobs/")
    assert put.path == f"{coords.workspace_scope}/jobs/amlbot-mlw-team-42"
    props = put.body["properties"]
    assert props["jobType"] == "Command"
    assert props["command"] == "python train.py --epochs 3"
    assert props["computeId"] == coords.compute_scope("gpu")
    assert props["experimentName"] == "churn"
    assert props["tags"] == REQUEST_TAGS
    assert props["environmentId"] == "azureml:AzureML-sklearn-1.5@latest"
    assert (info.name, info.status, info.compute) == (
        "amlbot-mlw-team-42",
        JobStatus.NOT_STARTED,
        "gpu",
    )


def test_the_bots_own_git_checkout_is_not_stamped_on_jobs(
    backend: AzureWorkspace, fake: FakeAzure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "amlbot-checkout"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "remote", "add", "origin", "https://git.example/amlbot.git"],
        check=True,
    )
    monkeypatch.chdir(repo)

    backend.submit_job(job_spec())

    properties = put_properties(fake)["properties"] or {}
    assert not [key for key in properties if "git" in key.lower()]


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("azureml:AzureML-sklearn-1.5@latest", "AzureML-sklearn-1.5@latest"),
        ("AzureML-sklearn-1.5", "AzureML-sklearn-1.5@latest"),
        ("AzureML-sklearn-1.5:12", "azureml:AzureML-sklearn-1.5:12"),
        ("azureml:AzureML-sklearn-1.5:12", "azureml:AzureML-sklearn-1.5:12"),
        ("mcr.microsoft.com/azureml/minimal:latest", "mcr.microsoft.com/azureml/minimal:latest"),
    ],
)
def test_environments_are_normalised(typed: str, sent: str) -> None:
    assert normalise_environment(typed) == sent


def test_an_environment_that_is_none_of_the_forms_is_named_in_code_quotes() -> None:
    with pytest.raises(WorkspaceError) as refused:
        normalise_environment("sklearn latest")

    assert refused.value.message.startswith("`sklearn latest` is not an environment")


def test_an_input_that_is_not_a_uri_is_named_in_code_quotes(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    with pytest.raises(WorkspaceError) as refused:
        backend.submit_job(job_spec(inputs={"data": "ftp://example.com/x.csv"}))

    assert "Input `ftp://example.com/x.csv` must be" in refused.value.message
    assert fake.calls_to("PUT", "/jobs/") == []


def test_an_image_environment_becomes_an_anonymous_environment(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.submit_job(job_spec(environment="mcr.microsoft.com/azureml/minimal:latest"))

    [env_put] = fake.calls_to("PUT", "/environments/")
    assert env_put.body["properties"]["image"] == "mcr.microsoft.com/azureml/minimal:latest"
    assert "/environments/" in put_properties(fake)["environmentId"]


def test_inputs_are_typed_by_their_uri(backend: AzureWorkspace, fake: FakeAzure) -> None:
    backend.submit_job(
        job_spec(
            inputs={
                "folder": "azureml://datastores/workspaceblobstore/paths/raw/",
                "file": "https://stsales.blob.core.windows.net/raw/2026.csv",
                "lake": "abfss://fs@stsales.dfs.core.windows.net/clean",
                "table": "azureml://datastores/workspaceblobstore/paths/sales/MLTable",
                "asset": "azureml:sales:3",
            }
        )
    )

    inputs = put_properties(fake)["inputs"]
    assert {name: value["jobInputType"] for name, value in inputs.items()} == {
        "folder": "uri_folder",
        "file": "uri_file",
        "lake": "uri_folder",
        "table": "mltable",
        "asset": "mltable",
    }


def test_code_is_a_registered_asset_never_an_upload(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    backend.submit_job(job_spec(code="azureml:train-src:1"))

    assert put_properties(fake)["codeId"] == f"{coords.workspace_scope}/codes/train-src/versions/1"
    assert fake.calls_to("POST", "listSecrets") == []


@pytest.mark.parametrize("code", ["./src", "git+https://github.com/contoso/churn.git"])
def test_local_or_git_code_is_refused_before_anything_is_sent(
    backend: AzureWorkspace, fake: FakeAzure, code: str
) -> None:
    with pytest.raises(WorkspaceError, match="code asset"):
        backend.submit_job(job_spec(code=code))

    assert fake.calls == []


def test_submitting_the_same_job_twice_puts_it_once(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.submit_job(job_spec())
    again = backend.submit_job(job_spec())

    assert again.name == "amlbot-mlw-team-42"
    assert len(fake.calls_to("PUT", "/jobs/")) == 1


def test_a_job_comes_back_with_its_studio_link(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    backend.submit_job(job_spec())
    fake.set_job_status(coords, "amlbot-mlw-team-42", "Running")

    info = backend.get_job("amlbot-mlw-team-42")

    assert info.status is JobStatus.RUNNING
    assert info.studio_url is not None
    assert info.studio_url.startswith(f"{fake.base_url}/studio/runs/amlbot-mlw-team-42")
    assert info.tags["amlbot-requester"] == "U0ALICE01"


def test_a_missing_job_is_not_found(backend: AzureWorkspace) -> None:
    with pytest.raises(NotFoundError, match="no job `nope` in workspace `mlw-"):
        backend.get_job("nope")


def test_jobs_are_listed_by_tag(backend: AzureWorkspace, fake: FakeAzure) -> None:
    backend.submit_job(job_spec())
    backend.submit_job(
        job_spec(name="amlbot-mlw-team-43", tags={**REQUEST_TAGS, "amlbot-requester": "U0BOB0001"})
    )

    mine = backend.list_jobs(tag_filter={"amlbot-requester": "U0ALICE01"})

    assert [job.name for job in mine] == ["amlbot-mlw-team-42"]
    [listing] = fake.calls_to("GET", "/jobs$")
    assert listing.query["tag"] == "amlbot-requester"


def test_cancel_waits_for_azure_and_reports_canceled(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.submit_job(job_spec())

    info = backend.cancel_job("amlbot-mlw-team-42")

    assert info.status is JobStatus.CANCELED
    assert len(fake.calls_to("POST", "/jobs/amlbot-mlw-team-42/cancel$")) == 1


def test_cancelling_a_finished_job_changes_nothing(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    backend.submit_job(job_spec())
    fake.set_job_status(coords, "amlbot-mlw-team-42", "Completed")

    info = backend.cancel_job("amlbot-mlw-team-42")

    assert info.status is JobStatus.COMPLETED
    assert fake.calls_to("POST", "/cancel$") == []


def test_a_time_limit_becomes_the_command_jobs_timeout(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.submit_job(job_spec(timeout_seconds=4 * 3600))
    # azure-ai-ml sends CommandJobLimits as `limits` with an ISO 8601 duration.
    assert put_properties(fake)["limits"] == {"jobLimitsType": "Command", "timeout": "PT4H"}


def test_without_a_time_limit_the_job_has_none(backend: AzureWorkspace, fake: FakeAzure) -> None:
    backend.submit_job(job_spec())
    assert not (put_properties(fake).get("limits") or {}).get("timeout")
