"""Revocation cannot be stranded: a claim that dies (or whose Azure call fails) is finished by
the next sweep round once its lease runs out, or taken over by `/aml access revoke`; the
holder is told exactly once. And a grant lasts its full duration from when it exists."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from approvals.grants import RETRY_LEASE, REVOKE_LEASE
from approvals.reminders import warn_expiring_grants
from approvals.tables import AuditRow, GrantRow, OutboxRow
from bot.wiring import Core
from shared.errors import TransientError
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace
from workspaces.port import WorkspaceBackend
from workspaces.types import GrantReceipt, RoleGrantSpec

ACCESS = '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'


class ProcessDied(BaseException):
    """What `kill -9` looks like from inside: nothing after it runs, no handler catches it."""


class DiesWhileRevoking:
    """The real workspace; the process dies in the middle of the Azure delete."""

    def __init__(self, inner: WorkspaceBackend) -> None:
        self.inner = inner

    def revoke_cluster_access(self, grant: RoleGrantSpec) -> None:
        raise ProcessDied

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class UnavailableOnce:
    """The real workspace, answering the next delete with Azure's 503 (as translated)."""

    def __init__(self, inner: WorkspaceBackend) -> None:
        self.inner = inner
        self.failures = 1

    def revoke_cluster_access(self, grant: RoleGrantSpec) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientError("Azure answered 503 Service Unavailable; try again later")
        self.inner.revoke_cluster_access(grant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SlowToGrant:
    """The real workspace, where creating the role assignment takes `takes` of the clock."""

    def __init__(self, inner: WorkspaceBackend, clock: ManualClock, takes: timedelta) -> None:
        self.inner = inner
        self.clock = clock
        self.takes = takes

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt:
        self.clock.advance(self.takes)
        return self.inner.grant_cluster_access(grant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def local(core: Core) -> LocalWorkspace:
    backend = core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    return backend


def granted(core: Core) -> GrantRow:
    assert core.service.handle_text("alice", ACCESS).ok
    assert core.service.handle_text("bob", "/aml approve 1").ok
    return grant(core)


def grant(core: Core) -> GrantRow:
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow)).one()


def revoked_notices(core: Core) -> list[str]:
    with core.store.transaction() as session:
        rows = session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        texts = [str(r.payload.get("text")) for r in rows if r.payload.get("person") == "alice"]
    return [t for t in texts if "was revoked" in t]


def failed_revocations(core: Core) -> int:
    with core.store.transaction() as session:
        rows = session.scalars(
            select(AuditRow).where(AuditRow.action == "access.revoke", AuditRow.outcome == "failed")
        )
        return len(list(rows))


def die_while_revoking(core: Core, run: Any) -> None:
    workspace = local(core)
    core.backends.install("demo", DiesWhileRevoking(workspace))  # type: ignore[arg-type]
    with contextlib.suppress(ProcessDied):
        run()
    core.backends.install("demo", workspace)  # the next process has a working one


def test_an_expiry_interrupted_after_its_claim_is_finished_once_the_lease_runs_out(
    core: Core, clock: ManualClock
) -> None:
    first = granted(core)
    clock.set(first.expires_at + timedelta(seconds=1))
    die_while_revoking(core, core.service.workflow.revoke_expired_grants)
    assert grant(core).status == "revoking"
    assert core.service.workflow.revoke_expired_grants() == []  # the claim is still leased

    clock.advance(REVOKE_LEASE)
    assert core.service.workflow.revoke_expired_grants() == [first.id]

    assert grant(core).status == "revoked"
    assert local(core).role_assignments() == []
    assert core.service.workflow.revoke_expired_grants() == []
    (notice,) = revoked_notices(core)
    assert "it expired" in notice


def test_revoke_on_a_grant_stuck_revoking_past_its_lease_takes_it_over(
    core: Core, clock: ManualClock
) -> None:
    granted(core)
    die_while_revoking(core, lambda: core.service.handle_text("bob", "/aml access revoke 1"))

    busy = core.service.handle_text("alice", "/aml access revoke 1")
    assert not busy.ok and "being revoked right now" in busy.text

    clock.advance(REVOKE_LEASE)
    again = core.service.handle_text("alice", "/aml access revoke 1")

    assert again.ok, again.text
    assert grant(core).status == "revoked" and grant(core).revoked_by == "bob"
    assert local(core).role_assignments() == []
    (notice,) = revoked_notices(core)
    assert "revoked by bob" in notice


def test_a_revocation_azure_fails_stays_revoking_and_the_next_round_finishes_it(
    core: Core, clock: ManualClock
) -> None:
    first = granted(core)
    workspace = local(core)
    core.backends.install("demo", UnavailableOnce(workspace))  # type: ignore[arg-type]
    clock.set(first.expires_at)

    assert core.service.workflow.revoke_expired_grants() == []
    stuck = grant(core)
    assert stuck.status == "revoking" and "503" in (stuck.revoke_error or "")
    assert stuck.revoke_lease_until == clock.now() + RETRY_LEASE
    assert core.service.workflow.revoke_expired_grants() == []  # not before the short lease
    assert failed_revocations(core) == 1

    clock.advance(RETRY_LEASE)
    assert core.service.workflow.revoke_expired_grants() == [first.id]

    done = grant(core)
    assert (done.status, done.revoke_error, done.revoke_lease_until) == ("revoked", None, None)
    assert workspace.role_assignments() == []
    assert failed_revocations(core) == 1
    assert len(revoked_notices(core)) == 1


def test_a_revocation_already_finished_by_another_replica_tells_no_one_again(
    core: Core, clock: ManualClock
) -> None:
    first = granted(core)
    clock.set(first.expires_at)
    die_while_revoking(core, core.service.workflow.revoke_expired_grants)
    clock.advance(REVOKE_LEASE)
    # Replica B takes the stale claim over and finishes it; replica A (slow, not dead)
    # then gets Azure's answer too: the assignment is gone either way, told once.
    assert core.service.workflow.revoke_expired_grants() == [first.id]
    assert core.service.workflow._revoked(grant(core), "it expired").status == "revoked"

    assert len(revoked_notices(core)) == 1


def test_a_grant_lasts_its_full_duration_from_when_the_access_exists(
    core: Core, clock: ManualClock
) -> None:
    core.backends.install("demo", SlowToGrant(local(core), clock, timedelta(seconds=7)))  # type: ignore[arg-type]
    approved_at: datetime = clock.now()

    made = granted(core)

    assert made.granted_at == approved_at + timedelta(seconds=7)
    assert made.expires_at - made.granted_at == timedelta(hours=2)
    clock.set(made.expires_at - timedelta(minutes=10))
    warn_expiring_grants(core, clock.now())
    with core.store.transaction() as session:
        (offer,) = [r for r in session.scalars(select(OutboxRow)) if r.kind == "grant.expiring"]
    assert "another 2h." in offer.payload["text"]
