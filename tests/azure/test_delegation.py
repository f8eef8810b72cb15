"""The bot may only grant the roles policy grants, to users: the condition on its own role
assignment (Azure ABAC) says so, Azure (here the fake) enforces it, and check-config checks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import PermissionDeniedError
from tests.azure.test_online_check import workspace_config
from tests.azure.test_rbac import grant_spec
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_arm_state import BUILTIN_ROLES
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure import check_workspace_online, delegation
from workspaces.azure.backend import AzureWorkspace
from workspaces.types import AzureCoordinates

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "deploy" / "azure-role-assignment-condition.txt").read_text()
DATA_SCIENTIST = BUILTIN_ROLES["AzureML Data Scientist"]
OWNER = BUILTIN_ROLES["Owner"]


def online_problems(fake: FakeAzure, coords: AzureCoordinates, **policy: object) -> list[str]:
    return check_workspace_online(
        workspace_config(coords, **policy).azure_settings(),
        fake.cloud_config(),
        FakeCredential(),
        **fake.backend_options(),
    )


def test_the_shipped_condition_is_microsofts_pattern_for_the_data_scientist_role() -> None:
    assert SHIPPED.strip() == delegation.render([DATA_SCIENTIST])
    assert (
        "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
        f"ForAnyOfAnyValues:GuidEquals {{{DATA_SCIENTIST}}}" in SHIPPED
    )
    assert (
        "@Resource[Microsoft.Authorization/roleAssignments:PrincipalType] "
        "ForAnyOfAnyValues:StringEqualsIgnoreCase {'User'}" in SHIPPED
    )
    assert delegation.DATA_SCIENTIST_ROLE_ID == DATA_SCIENTIST


def test_granting_owner_is_refused_by_azure_under_the_condition(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    with pytest.raises(PermissionDeniedError, match="roleAssignments/write"):
        backend.grant_cluster_access(grant_spec(role_name="Owner"))

    assert fake.assignments() == []


def test_granting_the_policy_role_to_a_user_passes_the_condition(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.grant_cluster_access(grant_spec())

    [made] = fake.assignments()
    assert made["properties"]["roleDefinitionId"].endswith(DATA_SCIENTIST)


def test_removing_an_owner_assignment_is_refused_by_azure_under_the_condition(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    fake.bot_condition = None  # someone made an Owner assignment under this name
    backend.grant_cluster_access(grant_spec(role_name="Owner"))
    fake.bot_condition = SHIPPED

    with pytest.raises(PermissionDeniedError, match="roleAssignments/delete"):
        backend.revoke_cluster_access(grant_spec(role_name="Owner"))

    assert len(fake.assignments()) == 1


def test_check_config_accepts_the_shipped_condition(
    fake: FakeAzure, coords: AzureCoordinates
) -> None:
    assert online_problems(fake, coords) == []


def test_check_config_reports_a_missing_condition(
    fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.bot_condition = None

    [problem] = online_problems(fake, coords)

    assert "carries no condition, so the bot could assign any role (Owner too)" in problem
    assert "deploy/azure-role-assignment-condition.txt" in problem


def test_check_config_reports_a_condition_that_allows_owner(
    fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.bot_condition = delegation.render([DATA_SCIENTIST, OWNER])

    problems = online_problems(fake, coords)

    assert len(problems) == 2  # write and delete
    assert all(f"roles policy does not grant: {OWNER}" in p for p in problems)


def test_check_config_reports_a_condition_without_the_policys_role(
    fake: FakeAzure, coords: AzureCoordinates
) -> None:
    operator = BUILTIN_ROLES["AzureML Compute Operator"]

    problems = online_problems(fake, coords, access={"role": "AzureML Compute Operator"})

    assert len(problems) == 2
    assert all("does not let" in p and operator in p for p in problems)


def test_check_config_reports_a_condition_open_to_groups(
    fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.bot_condition = delegation.render([DATA_SCIENTIST], ("User", "Group"))

    problems = online_problems(fake, coords)

    assert len(problems) == 2
    assert all("principal types other than user" in p for p in problems)


def test_a_condition_written_another_way_is_not_taken_as_sound() -> None:
    other = "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEquals 'User'"

    found = delegation.problems(
        other,
        "2.0",
        permitted=[DATA_SCIENTIST],
        required=[DATA_SCIENTIST],
        principal_types={"User"},
    )

    assert len(found) == 2
