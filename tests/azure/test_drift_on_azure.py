"""Drift on Azure, with azure-mgmt-authorization against the fake: the assignments at the
workspace's and its clusters' scopes are read with `role_assignments.list_for_scope`
(`roleAssignments/read`), and a revocation is reported done only once a read-back
(`role_assignments.get`) no longer finds the assignment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from approvals.tables import DriftFindingRow, GrantRow
from bot.wiring import Core
from shared.errors import PermissionDeniedError
from tests.azure.test_core_scenario import azure_core as azure_core
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_arm_state import BUILTIN_ROLES
from workspaces.clock import ManualClock
from workspaces.types import AzureCoordinates

CAROL = "33333333-3333-4333-8333-333333333333"
STRAY = "9f0e1d2c-3b4a-4596-8877-665544332211"


def findings(core: Core) -> list[DriftFindingRow]:
    with core.store.transaction() as session:
        return list(session.scalars(select(DriftFindingRow).order_by(DriftFindingRow.id)))


def grant_of(core: Core) -> GrantRow:
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow)).one()


def test_a_stray_assignment_is_found_and_removed_with_a_read_back(
    azure_core: tuple[Core, AzureCoordinates],
    fake: FakeAzure,
) -> None:
    core, coords = azure_core
    fake.add_principal(CAROL)
    fake.add_role_assignment(
        coords.compute_scope("gpu-cluster"), STRAY, CAROL, BUILTIN_ROLES["AzureML Data Scientist"]
    )
    # Above the workspace: not the workspace's to judge.
    rg = coords.workspace_scope.split("/providers/")[0]
    fake.add_role_assignment(
        rg, "0f0e1d2c-3b4a-4596-8877-665544332299", CAROL, BUILTIN_ROLES["AzureML Data Scientist"]
    )
    reply = core.service.handle_text("bob", "/aml drift check")
    assert "Drift found" in reply.text, reply.text
    (finding,) = findings(core)
    assert finding.kind == "stray" and finding.compute == "gpu-cluster"
    assert fake.calls_to("GET", "/providers/Microsoft.Authorization/roleAssignments")
    fixed = core.service.handle_text("bob", f"/aml drift fix {finding.id}")
    assert fixed.ok and "the assignment is gone" in fixed.text, fixed.text
    assert [a["name"] for a in fake.assignments()] == ["0f0e1d2c-3b4a-4596-8877-665544332299"]


def test_a_revocation_azure_acknowledged_but_did_not_carry_out_is_not_reported_done(
    azure_core: tuple[Core, AzureCoordinates],
    fake: FakeAzure,
    clock: ManualClock,
) -> None:
    core, _ = azure_core
    assert core.service.handle_text("alice", '/aml access request gpu-cluster --reason "bert"').ok
    assert core.service.handle_text("bob", "/aml approve 1").ok
    grant = grant_of(core)
    fake.lagging_deletes.add(grant.assignment_name)
    clock.advance(timedelta(hours=5))
    assert core.service.workflow.revoke_expired_grants() == []
    stuck = grant_of(core)
    assert stuck.status == "revoking" and "still lists the role assignment" in (
        stuck.revoke_error or ""
    )
    fake.lagging_deletes.clear()
    clock.advance(timedelta(minutes=1))
    assert core.service.workflow.revoke_expired_grants() == [grant.id]
    assert grant_of(core).status == "revoked" and fake.assignments() == []


def test_without_role_assignments_read_the_check_names_the_permission(
    azure_core: tuple[Core, AzureCoordinates],
    fake: FakeAzure,
) -> None:
    core, _ = azure_core
    fake.deny("Microsoft.Authorization/roleAssignments/read")
    reply = core.service.handle_text("bob", "/aml drift check")
    assert not reply.ok and "Microsoft.Authorization/roleAssignments/read" in reply.text
    with pytest.raises(PermissionDeniedError):
        core.backends("demo").list_access_assignments("AzureML Data Scientist")
