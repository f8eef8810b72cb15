"""A work-bound grant on Azure, with the real SDKs against the fake: the bot reads the
workspace's jobs (azure-ai-ml's jobs.list, every page) and picks the holder's on the
cluster by Azure's `createdBy`, whether they submitted through the bot or directly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from approvals.tables import GrantRow
from bot.wiring import Core
from shared.errors import PermissionDeniedError
from tests.azure.test_core_scenario import ALICE
from tests.azure.test_core_scenario import azure_core as azure_core
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_arm_ml import add_job_submitted_by
from workspaces.clock import ManualClock
from workspaces.types import AzureCoordinates

ASK = '/aml access request gpu-cluster --until-done --for 8h --reason "fine-tune BERT"'


@pytest.fixture
def granted(azure_core: tuple[Core, AzureCoordinates]) -> tuple[Core, AzureCoordinates]:
    core, coords = azure_core
    asked = core.service.handle_text("alice", ASK)
    assert asked.ok, asked.text
    assert core.service.handle_text("bob", f"/aml approve {asked.request_id}").ok
    return core, coords


def grant_of(core: Core) -> GrantRow:
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow)).one()


def rounds(core: Core, clock: ManualClock, minutes: int) -> None:
    for _ in range(minutes):
        clock.advance(timedelta(minutes=1))
        core.service.workflow.end_grants_whose_work_ended("demo")


def test_a_job_submitted_directly_keeps_the_grant_until_it_ends(
    granted: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, coords = granted
    add_job_submitted_by(fake, coords, "alice-direct-1", "gpu-cluster", created_by=ALICE)
    rounds(core, clock, 45)
    assert grant_of(core).status == "active"
    assert fake.assignments() != []

    fake.set_job_status(coords, "alice-direct-1", "Completed")
    rounds(core, clock, 29)
    assert grant_of(core).status == "active"
    rounds(core, clock, 2)
    grant = grant_of(core)
    assert grant.status == "revoked" and grant.end_reason == "work_done"
    assert fake.assignments() == []
    assert fake.calls_to("GET", "/jobs"), "the workspace's jobs were read"


def test_a_job_through_the_bot_counts_and_another_persons_does_not(
    granted: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, coords = granted
    submitted = core.service.handle_text(
        "alice",
        "/aml job submit --compute gpu-cluster --environment "
        'azureml:AzureML-sklearn-1.5@latest --command "python train.py"',
    )
    assert submitted.ok, submitted.text
    job = submitted.text.split("`")[1]
    fake.set_job_status(coords, job, "Running")
    add_job_submitted_by(fake, coords, "carols-job", "gpu-cluster", created_by="carol@x.example")
    rounds(core, clock, 40)
    assert grant_of(core).status == "active"
    fake.set_job_status(coords, job, "Failed")
    rounds(core, clock, 31)
    assert grant_of(core).end_reason == "work_done"


def test_without_jobs_read_the_round_names_the_permission_and_the_grant_stays(
    granted: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, _ = granted
    fake.deny("Microsoft.MachineLearningServices/workspaces/jobs/read")
    clock.advance(timedelta(minutes=31))
    with pytest.raises(PermissionDeniedError, match="workspaces/jobs/read"):
        core.service.workflow.end_grants_whose_work_ended("demo")
    assert grant_of(core).status == "active"  # never ended on what could not be read
