"""Drift, checked, on the simulated workspace: assignments the bot did not make, grants
Azure lacks, and clusters whose settings drifted back are reported once to the leads, each
fixed by a lead as an audited request; nightly, once a day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from approvals.actions.access import spec_of_grant
from approvals.drift import DRIFT_REPORT, settle_finding
from approvals.scheduled import run_due
from approvals.tables import AuditRow, DriftFindingRow, DriftStatus, GrantRow, RequestStatus
from bot.wiring import Core
from tests.notify.conftest import notices
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace
from workspaces.types import RoleGrantSpec

CAROL = "33333333-3333-4333-8333-333333333333"
STRAY = "9f0e1d2c-3b4a-4596-8877-665544332211"


def local(core: Core) -> LocalWorkspace:
    backend = core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    return backend


def stray_assignment(core: Core) -> None:
    local(core).grant_cluster_access(
        RoleGrantSpec(
            assignment_name=STRAY,
            principal_object_id=CAROL,
            role_name="AzureML Data Scientist",
            compute="gpu-cluster",
            scope="compute",
            description="made in the portal",
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        )
    )


def findings(core: Core) -> list[DriftFindingRow]:
    with core.store.transaction() as session:
        return list(session.scalars(select(DriftFindingRow).order_by(DriftFindingRow.id)))


def test_no_drift_on_a_fresh_workspace(core: Core) -> None:
    reply = core.service.handle_text("bob", "drift check")
    assert reply.ok and "No drift in `demo`" in reply.text


def test_only_leads_run_the_drift_check(core: Core) -> None:
    reply = core.service.handle_text("alice", "drift check")
    assert not reply.ok


def test_a_stray_assignment_is_reported_and_revoked_as_a_request(core: Core) -> None:
    stray_assignment(core)
    assert "Drift found in `demo`" in core.service.handle_text("bob", "drift check").text
    (finding,) = findings(core)
    assert finding.kind == "stray" and CAROL in finding.text
    (report,) = notices(core, DRIFT_REPORT)
    assert report["findings"] == [finding.id]
    fixed = core.service.handle_text("bob", f"drift fix {finding.id}")
    assert fixed.ok, fixed.text
    assert "Read back from Azure: the assignment is gone." in fixed.text
    assert local(core).role_assignments() == []
    (finding,) = findings(core)
    assert finding.status is DriftStatus.FIXED and finding.request_id == fixed.request_id
    again = core.service.handle_text("bob", f"drift fix {finding.id}")
    assert not again.ok and "already fixed by bob" in again.text
    with core.store.transaction() as session:
        actions = set(session.scalars(select(AuditRow.action)))
    assert {"drift.requested", "drift.executed"} <= actions


def test_a_grant_azure_lacks_is_reported_and_regranted(core: Core) -> None:
    assert core.service.handle_text("alice", 'access request gpu-cluster --reason "bert"').ok
    assert core.service.handle_text("bob", "approve 1").ok
    with core.store.transaction() as session:
        grant = session.scalars(select(GrantRow)).one()
    local(core).revoke_cluster_access(spec_of_grant(grant, "removed in the portal"))
    core.service.handle_text("bob", "drift check")
    (finding,) = findings(core)
    assert finding.kind == "missing" and "Grant #1 (alice on `gpu-cluster`" in finding.text
    assert core.service.handle_text("bob", f"drift fix {finding.id}").ok
    assert [a.assignment_name for a in local(core).role_assignments()] == [grant.assignment_name]


def test_a_cluster_whose_minimum_drifted_back_is_set_back(core: Core) -> None:
    local(core).set_cluster_min_nodes("gpu-cluster", 2)
    local(core).set_cluster_idle_time("gpu-cluster", 1800)
    core.service.handle_text("bob", "drift check")
    kinds = {f.kind: f for f in findings(core)}
    assert set(kinds) == {"min_nodes", "idle_time"}
    for finding in kinds.values():
        assert core.service.handle_text("bob", f"drift fix {finding.id}").ok
    cluster = local(core).list_computes().cluster("gpu-cluster")
    assert cluster is not None
    assert (cluster.min_nodes, cluster.idle_seconds_before_scale_down) == (0, 120)


def test_the_check_runs_nightly_once_a_day(core: Core, clock: ManualClock) -> None:
    stray_assignment(core)
    clock.set(datetime(2026, 1, 6, 1, 59, tzinfo=UTC))
    assert run_due(core, core.service.workflow, clock.now()).drift_reports == []
    clock.advance(timedelta(minutes=1))
    assert len(run_due(core, core.service.workflow, clock.now()).drift_reports) == 1
    clock.advance(timedelta(hours=12))
    assert run_due(core, core.service.workflow, clock.now()).drift_reports == []
    clock.advance(timedelta(hours=12))
    # the next night
    assert len(run_due(core, core.service.workflow, clock.now()).drift_reports) == 1


def test_a_revocation_that_did_not_take_is_reported_and_revoked_again(core: Core) -> None:
    assert core.service.handle_text("alice", 'access request gpu-cluster --reason "bert"').ok
    assert core.service.handle_text("bob", "approve 1").ok
    assert core.service.handle_text("alice", "access revoke 1").ok
    with core.store.transaction() as session:
        grant = session.scalars(select(GrantRow)).one()
    # The assignment is back (a replica of Azure's that lagged, or someone re-made it).
    local(core).grant_cluster_access(spec_of_grant(grant, "still there"))
    core.service.handle_text("bob", "drift check")
    (finding,) = findings(core)
    assert finding.kind == "revocation_not_taken" and "Grant #1" in finding.text
    fixed = core.service.handle_text("bob", f"drift fix {finding.id}")
    assert fixed.ok and "the assignment is gone" in fixed.text
    assert local(core).role_assignments() == []


def test_a_finding_is_open_again_when_its_fixing_request_failed_and_fixing_while_retried(
    core: Core,
) -> None:
    stray_assignment(core)
    core.service.handle_text("bob", "drift check")
    (finding,) = findings(core)
    fix = core.service.handle_text("bob", f"drift fix {finding.id}")
    assert fix.request_id is not None

    settle_finding(core.store, finding.id, fix.request_id, RequestStatus.EXECUTING)
    assert [f.status for f in findings(core)] == [DriftStatus.FIXING]
    settle_finding(core.store, finding.id, fix.request_id, RequestStatus.FAILED)
    assert [f.status for f in findings(core)] == [DriftStatus.OPEN]
