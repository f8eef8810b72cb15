"""`check-config --online`: the workspace is reachable and the bot may do what it must."""

from __future__ import annotations

from approvals.config import WorkspaceConfig
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure import check_workspace_online
from workspaces.types import AzureCoordinates


def workspace_config(coords: AzureCoordinates, **policy: object) -> WorkspaceConfig:
    return WorkspaceConfig.model_validate(
        {
            "name": "team",
            "azure": coords.model_dump(),
            "backend": "azure",
            "team_leads": ["lead@contoso.example"],
            "policy": policy,
        }
    )


def test_a_fully_permitted_workspace_has_no_problems(
    fake: FakeAzure, coords: AzureCoordinates
) -> None:
    problems = check_workspace_online(
        workspace_config(coords).azure_settings(),
        fake.cloud_config(),
        FakeCredential(),
        **fake.backend_options(),
    )

    assert problems == []


def test_missing_permissions_are_listed_with_their_purpose(
    fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.deny("Microsoft.Authorization/roleAssignments/delete")

    problems = check_workspace_online(
        workspace_config(coords).azure_settings(),
        fake.cloud_config(),
        FakeCredential(),
        **fake.backend_options(),
    )

    assert problems == [
        "the bot's identity lacks `Microsoft.Authorization/roleAssignments/delete` on "
        f"`{coords.workspace_scope}` (needed to revoke cluster access when it expires)"
    ]


def test_pim_mode_also_needs_schedule_requests(fake: FakeAzure, coords: AzureCoordinates) -> None:
    fake.bot_actions.remove("Microsoft.Authorization/roleAssignmentScheduleRequests/write")

    problems = check_workspace_online(
        workspace_config(coords, access={"mode": "pim"}).azure_settings(),
        fake.cloud_config(),
        FakeCredential(),
        **fake.backend_options(),
    )

    assert len(problems) == 1
    assert "roleAssignmentScheduleRequests/write" in problems[0]


def test_an_unreachable_workspace_is_one_problem(fake: FakeAzure, coords: AzureCoordinates) -> None:
    missing = coords.model_copy(update={"workspace_name": "mlw-gone"})

    problems = check_workspace_online(
        workspace_config(missing).azure_settings(),
        fake.cloud_config(),
        FakeCredential(),
        **fake.backend_options(),
    )

    assert len(problems) == 1
    assert "mlw-gone" in problems[0]


def test_an_unknown_role_in_policy_is_a_problem(fake: FakeAzure, coords: AzureCoordinates) -> None:
    problems = check_workspace_online(
        workspace_config(coords, access={"role": "AzureML Data Scientst"}).azure_settings(),
        fake.cloud_config(),
        FakeCredential(),
        **fake.backend_options(),
    )

    assert len(problems) == 1
    assert "AzureML Data Scientst" in problems[0]


def test_a_role_without_the_cancel_action_is_reported_though_it_has_jobs_write(
    fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.bot_actions.remove("Microsoft.MachineLearningServices/workspaces/jobs/cancel/action")

    problems = check_workspace_online(
        workspace_config(coords).azure_settings(),
        fake.cloud_config(),
        FakeCredential(),
        **fake.backend_options(),
    )

    assert problems == [
        "the bot's identity lacks `Microsoft.MachineLearningServices/workspaces/jobs/cancel/action`"
        f" on `{coords.workspace_scope}` (needed to cancel jobs (`jobs/write` does not cover it))"
    ]
