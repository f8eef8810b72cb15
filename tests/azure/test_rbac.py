"""Cluster access: role assignments PUT and DELETE by deterministic name, and PIM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import NotFoundError, PermissionDeniedError, QuotaError
from tests.azure.conftest import ALICE_EMAIL, ALICE_OBJECT_ID
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_arm_state import BUILTIN_ROLES
from workspaces.azure.backend import AzureWorkspace
from workspaces.azure.rbac import extension_request_name
from workspaces.types import AzureCoordinates, RoleGrantSpec

ASSIGNMENT = "0b7d3c1e-6f1a-5d2b-9c3e-1a2b3c4d5e6f"
DATA_SCIENTIST = BUILTIN_ROLES["AzureML Data Scientist"]


def grant_spec(**changes: object) -> RoleGrantSpec:
    values: dict[str, object] = {
        "assignment_name": ASSIGNMENT,
        "principal_object_id": ALICE_OBJECT_ID,
        "role_name": "AzureML Data Scientist",
        "compute": "gpu",
        "scope": "compute",
        "description": "amlbot request #7 for alice; expires 2026-01-05T13:00",
        "expires_at": datetime(2026, 1, 5, 13, 0, tzinfo=UTC),
    }
    values.update(changes)
    return RoleGrantSpec.model_validate(values)


def assignment_path(scope: str, name: str = ASSIGNMENT) -> str:
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"


def test_grant_is_a_put_of_the_role_assignment_at_the_cluster_scope(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    receipt = backend.grant_cluster_access(grant_spec())

    scope = coords.compute_scope("gpu")
    [put] = fake.calls_to("PUT", "roleAssignments/")
    assert put.path == assignment_path(scope)
    assert put.query["api-version"] == "2022-04-01"
    props = put.body["properties"]
    assert props["roleDefinitionId"].endswith(f"/roleDefinitions/{DATA_SCIENTIST}")
    assert props["principalId"] == ALICE_OBJECT_ID
    assert props["principalType"] == "User"
    assert "request #7" in props["description"]
    assert receipt.assignment_id == assignment_path(scope)
    assert receipt.scope == scope
    assert "10 minutes" in receipt.note


def test_grant_at_workspace_scope_when_policy_says_so(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    backend.grant_cluster_access(grant_spec(scope="workspace"))

    [put] = fake.calls_to("PUT", "roleAssignments/")
    assert put.path == assignment_path(coords.workspace_scope)


def test_granting_twice_leaves_one_assignment(backend: AzureWorkspace, fake: FakeAzure) -> None:
    first = backend.grant_cluster_access(grant_spec())
    second = backend.grant_cluster_access(grant_spec())

    assert first.assignment_id == second.assignment_id
    assert len(fake.assignments()) == 1


def test_role_name_is_resolved_once_per_scope(backend: AzureWorkspace, fake: FakeAzure) -> None:
    backend.grant_cluster_access(grant_spec())
    backend.revoke_cluster_access(grant_spec())
    backend.grant_cluster_access(grant_spec(assignment_name="1b7d3c1e-6f1a-5d2b-9c3e-1a2b3c4d5e6f"))

    [lookup] = fake.calls_to("GET", "roleDefinitions$")
    assert lookup.query["$filter"] == "roleName eq 'AzureML Data Scientist'"


def test_revoke_is_a_delete_of_the_same_assignment(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    backend.grant_cluster_access(grant_spec())

    backend.revoke_cluster_access(grant_spec())

    [delete] = fake.calls_to("DELETE", "roleAssignments/")
    assert delete.path == assignment_path(coords.compute_scope("gpu"))
    assert fake.assignments() == []


def test_revoking_an_assignment_already_gone_counts_as_revoked(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.revoke_cluster_access(grant_spec())

    assert len(fake.calls_to("DELETE", "roleAssignments/")) == 1


def test_person_known_only_by_email_is_resolved_through_graph(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.grant_cluster_access(grant_spec(principal_object_id=ALICE_EMAIL))

    [put] = fake.calls_to("PUT", "roleAssignments/")
    assert put.body["properties"]["principalId"] == ALICE_OBJECT_ID


def test_unknown_email_says_to_configure_the_object_id(backend: AzureWorkspace) -> None:
    with pytest.raises(NotFoundError, match="object_id"):
        backend.grant_cluster_access(grant_spec(principal_object_id="bob@contoso.example"))


def test_grant_on_a_missing_cluster_names_it(backend: AzureWorkspace) -> None:
    with pytest.raises(NotFoundError, match="computes/cpu"):
        backend.grant_cluster_access(grant_spec(compute="cpu"))


def test_role_assignment_limit_is_said_plainly(backend: AzureWorkspace, fake: FakeAzure) -> None:
    fake.role_assignment_limit = 0

    with pytest.raises(QuotaError, match="limit of 4,000 role assignments"):
        backend.grant_cluster_access(grant_spec())


def test_missing_permission_names_action_scope_and_identity(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    fake.deny("Microsoft.Authorization/roleAssignments/write")

    with pytest.raises(PermissionDeniedError) as caught:
        backend.grant_cluster_access(grant_spec())

    message = caught.value.message
    assert "`Microsoft.Authorization/roleAssignments/write`" in message
    # Azure names the role assignment itself as the scope it refused.
    assert f"`{coords.compute_scope('gpu')}/providers/Microsoft.Authorization/roleAssignments/" in (
        message
    )
    assert fake.caller_object_id in message


def test_existing_assignment_by_someone_else_is_not_claimed(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.grant_cluster_access(grant_spec(assignment_name="9b7d3c1e-6f1a-5d2b-9c3e-1a2b3c4d5e6f"))

    receipt = backend.grant_cluster_access(grant_spec())

    assert "will not remove" in receipt.note


def test_pim_grant_is_a_schedule_request_ending_at_expiry(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=4)

    receipt = backend.grant_cluster_access(grant_spec(mode="pim", expires_at=expires))

    [put] = fake.calls_to("PUT", "roleAssignmentScheduleRequests/")
    assert put.path.startswith(coords.compute_scope("gpu"))
    assert put.query["api-version"] == "2020-10-01"
    props = put.body["properties"]
    assert props["requestType"] == "AdminAssign"
    assert props["scheduleInfo"]["expiration"]["type"] == "AfterDateTime"
    assert datetime.fromisoformat(props["scheduleInfo"]["expiration"]["endDateTime"]) == expires
    assert "ends it by itself" in receipt.note


def test_a_retried_pim_grant_finds_the_assignment_its_first_try_made(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=4)
    first = backend.grant_cluster_access(grant_spec(mode="pim", expires_at=expires))

    # As after a crash between Azure's answer and the bot's record: the same request again.
    again = backend.grant_cluster_access(grant_spec(mode="pim", expires_at=expires))

    assert again.assignment_id == first.assignment_id
    assert len(fake.calls_to("PUT", "roleAssignmentScheduleRequests/")) == 2
    assert len(fake.role_assignments) == 1


def test_pim_revoke_is_an_admin_remove_request(backend: AzureWorkspace, fake: FakeAzure) -> None:
    backend.grant_cluster_access(grant_spec(mode="pim"))

    backend.revoke_cluster_access(grant_spec(mode="pim"))
    backend.revoke_cluster_access(grant_spec(mode="pim"))  # already gone: still fine

    requests = fake.calls_to("PUT", "roleAssignmentScheduleRequests/")
    assert [r.body["properties"]["requestType"] for r in requests] == [
        "AdminAssign",
        "AdminRemove",
        "AdminRemove",
    ]
    assert fake.assignments() == []


def test_pim_extension_is_an_admin_extend_request_moving_the_assignments_end(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    ends = datetime.now(UTC) + timedelta(minutes=10)
    new_end = ends + timedelta(hours=2)
    backend.grant_cluster_access(grant_spec(mode="pim", expires_at=ends))

    receipt = backend.extend_cluster_access(grant_spec(mode="pim", expires_at=ends), new_end)

    _, extend = fake.calls_to("PUT", "roleAssignmentScheduleRequests/")
    scope = coords.compute_scope("gpu")
    name = extension_request_name(ASSIGNMENT, new_end)
    assert (
        extend.path
        == f"{scope}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{name}"
    )
    props = extend.body["properties"]
    assert props["requestType"] == "AdminExtend"
    assert props["principalId"] == ALICE_OBJECT_ID
    assert props["roleDefinitionId"].endswith(f"/roleDefinitions/{DATA_SCIENTIST}")
    assert props["scheduleInfo"]["expiration"]["type"] == "AfterDateTime"
    [assignment] = fake.assignments()
    assert datetime.fromisoformat(assignment["properties"]["endDateTime"]) == new_end
    assert receipt.assignment_id == assignment_path(scope)
    assert "ends it by itself" in receipt.note


def test_a_retried_pim_extension_reuses_its_request_name(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    ends = datetime.now(UTC) + timedelta(minutes=10)
    new_end = ends + timedelta(hours=2)
    backend.grant_cluster_access(grant_spec(mode="pim", expires_at=ends))

    backend.extend_cluster_access(grant_spec(mode="pim", expires_at=ends), new_end)
    backend.extend_cluster_access(grant_spec(mode="pim", expires_at=ends), new_end)

    first, again = fake.calls_to("PUT", "roleAssignmentScheduleRequests/")[1:]
    assert first.path == again.path  # Azure refuses the name the second time: already done
    extensions = [
        r
        for r in fake.schedule_requests.values()
        if r["properties"]["requestType"] == "AdminExtend"
    ]
    assert len(extensions) == 1
    [assignment] = fake.assignments()
    assert datetime.fromisoformat(assignment["properties"]["endDateTime"]) == new_end


def test_extending_a_pim_assignment_azure_has_ended_is_not_found(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    ended = datetime.now(UTC) - timedelta(minutes=1)
    backend.grant_cluster_access(grant_spec(mode="pim", expires_at=ended))

    with pytest.raises(NotFoundError, match="Ask for access again"):
        backend.extend_cluster_access(
            grant_spec(mode="pim", expires_at=ended), ended + timedelta(hours=2)
        )

    [assignment] = fake.assignments()
    assert datetime.fromisoformat(assignment["properties"]["endDateTime"]) == ended


def test_extending_a_pim_assignment_that_was_never_made_is_not_found(
    backend: AzureWorkspace,
) -> None:
    with pytest.raises(NotFoundError, match="to extend"):
        backend.extend_cluster_access(
            grant_spec(mode="pim"), datetime.now(UTC) + timedelta(hours=2)
        )


def test_rbac_extension_makes_no_azure_call(backend: AzureWorkspace, fake: FakeAzure) -> None:
    backend.grant_cluster_access(grant_spec())
    calls_before = len(fake.calls)

    receipt = backend.extend_cluster_access(grant_spec(), datetime(2026, 1, 5, 15, 0, tzinfo=UTC))

    assert len(fake.calls) == calls_before
    assert "The bot removes it at 2026-01-05T15:00" in receipt.note
    assert len(fake.assignments()) == 1


def test_pim_without_licence_names_the_licence(backend: AzureWorkspace, fake: FakeAzure) -> None:
    fake.pim_licensed = False

    with pytest.raises(PermissionDeniedError, match="Entra ID P2") as caught:
        backend.grant_cluster_access(grant_spec(mode="pim"))

    assert "access.mode: rbac" in caught.value.message


def test_person_whose_email_is_not_their_sign_in_name_is_found_by_mail(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    object_id = fake.add_user_with_mail("c.ortiz@contoso.onmicrosoft.com", "carol@contoso.example")

    backend.grant_cluster_access(grant_spec(principal_object_id="carol@contoso.example"))

    [put] = fake.calls_to("PUT", "roleAssignments/")
    assert put.body["properties"]["principalId"] == object_id
