"""Extending a grant: the Extend request, once approved, moves the active grant's end in the
workspace and in the bot's record, for PIM grants (which Azure ends itself) as for rbac."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from approvals.config import DEMO_CONFIG_PATH, parse_config
from approvals.payloads import AccessPayload
from approvals.states import RequestStatus
from approvals.tables import AuditRow, GrantRow, OutboxRow, RequestRow
from bot.wiring import Core
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace
from workspaces.port import WorkspaceBackend
from workspaces.types import GrantReceipt, RoleGrantSpec

ACCESS = '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'
WARNED = timedelta(hours=2) - timedelta(minutes=10)  # inside the 15-minute expiry warning


@pytest.fixture
def pim_core(database_url: str, make_core: Callable[..., Core]) -> Core:
    """The demo on SQLite and PostgreSQL, with `access.mode: pim`."""
    text = DEMO_CONFIG_PATH.read_text(encoding="utf-8")
    assert "mode: rbac " in text
    return make_core(parse_config(text.replace("mode: rbac ", "mode: pim ")), database_url)


def granted(core: Core) -> GrantRow:
    assert core.service.handle_text("alice", ACCESS).ok
    approved = core.service.handle_text("bob", "/aml approve 1")
    assert approved.ok, approved.text
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow)).one()


def ask_to_extend(core: Core) -> int:
    """alice's Extend: the same access request again, inside the expiry warning."""
    reply = core.service.handle_text("alice", ACCESS)
    assert reply.ok and reply.request_id is not None, reply.text
    with core.store.transaction() as session:
        request = session.get(RequestRow, reply.request_id)
        assert request is not None and isinstance(request.payload, AccessPayload)
        assert request.payload.extends_grant is not None
    return reply.request_id


def grants(core: Core) -> list[GrantRow]:
    with core.store.transaction() as session:
        return list(session.scalars(select(GrantRow).order_by(GrantRow.id)))


def request(core: Core, request_id: int) -> RequestRow:
    with core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        return row


def workspace(core: Core) -> LocalWorkspace:
    backend = core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    return backend


def assignment_ends(core: Core) -> list[datetime]:
    return [a.expires_at for a in workspace(core).role_assignments()]


def told(core: Core, person: str) -> list[str]:
    with core.store.transaction() as session:
        rows = session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        return [str(r.payload.get("text")) for r in rows if r.payload.get("person") == person]


def test_an_approved_extension_moves_a_pim_grants_end_in_the_workspace_and_the_record(
    pim_core: Core, clock: ManualClock
) -> None:
    grant = granted(pim_core)
    clock.advance(WARNED)
    extension = ask_to_extend(pim_core)

    approved = pim_core.service.handle_text("bob", f"/aml approve {extension}")

    assert approved.ok, approved.text
    new_end = grant.expires_at + timedelta(hours=2)
    [extended] = grants(pim_core)
    assert (extended.id, extended.expires_at, extended.status) == (grant.id, new_end, "active")
    assert extended.warned_at is None  # warned again before the new end
    assert assignment_ends(pim_core) == [new_end]
    done = request(pim_core, extension)
    assert done.status == RequestStatus.SUCCEEDED
    assert done.result == {
        "assignment_id": grant.assignment_id,
        "expires_at": new_end.isoformat(),
        "extended_grant": grant.id,
    }
    assert any("until 2026-01-05 13:00 UTC" in text for text in told(pim_core, "alice"))


def test_an_extended_pim_assignment_outlives_its_first_end(
    pim_core: Core, clock: ManualClock
) -> None:
    grant = granted(pim_core)
    clock.advance(WARNED)
    assert pim_core.service.handle_text("bob", f"/aml approve {ask_to_extend(pim_core)}").ok

    clock.set(grant.expires_at + timedelta(minutes=1))

    assert pim_core.service.workflow.revoke_expired_grants() == []
    assert assignment_ends(pim_core) == [grant.expires_at + timedelta(hours=2)]


def test_an_extension_is_audited_like_any_execution(pim_core: Core, clock: ManualClock) -> None:
    grant = granted(pim_core)
    clock.advance(WARNED)
    extension = ask_to_extend(pim_core)

    pim_core.service.handle_text("bob", f"/aml approve {extension}")

    with pim_core.store.transaction() as session:
        [event] = session.scalars(
            select(AuditRow).where(
                AuditRow.action == "access.executed", AuditRow.target == f"#{extension}"
            )
        )
    assert event.outcome == "succeeded"
    assert event.detail["extended_grant"] == grant.id


def test_an_extension_the_workspace_refuses_fails_the_request_with_the_reason(
    pim_core: Core, clock: ManualClock
) -> None:
    grant = granted(pim_core)
    clock.advance(WARNED)
    extension = ask_to_extend(pim_core)
    workspace(pim_core).revoke_cluster_access(spec_of(grant))  # removed outside the bot

    refused = pim_core.service.handle_text("bob", f"/aml approve {extension}")

    assert not refused.ok
    failed = request(pim_core, extension)
    assert failed.status == RequestStatus.FAILED
    assert failed.error is not None and "cannot be extended" in failed.error
    assert [g.expires_at for g in grants(pim_core)] == [grant.expires_at]
    assert any(
        "failed" in text and "Ask for access again" in text for text in told(pim_core, "alice")
    )


def test_a_pim_grant_that_ended_before_the_approval_is_granted_afresh(
    pim_core: Core, clock: ManualClock
) -> None:
    grant = granted(pim_core)
    clock.advance(WARNED)
    extension = ask_to_extend(pim_core)
    clock.set(grant.expires_at + timedelta(minutes=5))  # PIM ended it; no sweep ran yet

    approved = pim_core.service.handle_text("bob", f"/aml approve {extension}")

    assert approved.ok, approved.text
    assert "extended_grant" not in (request(pim_core, extension).result or {})
    assert [g.request_id for g in grants(pim_core)] == [1, extension]
    assert assignment_ends(pim_core) == [clock.now() + timedelta(hours=2)]


class RevokedMeanwhile:
    """The real workspace, with the grant revoked (by its holder) while Azure extends it."""

    def __init__(self, core: Core, grant_id: int) -> None:
        self.inner: WorkspaceBackend = core.backends("demo")
        self.core = core
        self.grant_id = grant_id

    def extend_cluster_access(self, grant: RoleGrantSpec, new_expiry: datetime) -> GrantReceipt:
        receipt = self.inner.extend_cluster_access(grant, new_expiry)
        self.core.service.workflow.revoke_grant(self.grant_id, "alice", reason="given up")
        return receipt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_grant_revoked_while_it_is_extended_stays_revoked(
    pim_core: Core, clock: ManualClock
) -> None:
    grant = granted(pim_core)
    clock.advance(WARNED)
    extension = ask_to_extend(pim_core)
    pim_core.backends.install("demo", RevokedMeanwhile(pim_core, grant.id))  # type: ignore[arg-type]

    refused = pim_core.service.handle_text("bob", f"/aml approve {extension}")

    assert not refused.ok
    assert "was revoked while it was being extended" in (request(pim_core, extension).error or "")
    [revoked] = grants(pim_core)
    assert (revoked.status, revoked.expires_at) == ("revoked", grant.expires_at)


def test_an_rbac_extension_also_moves_the_simulated_assignments_end(
    core: Core, clock: ManualClock
) -> None:
    grant = granted(core)
    clock.advance(WARNED)

    assert core.service.handle_text("bob", f"/aml approve {ask_to_extend(core)}").ok

    new_end = grant.expires_at + timedelta(hours=2)
    assert [g.expires_at for g in grants(core)] == [new_end]
    assert assignment_ends(core) == [new_end]


def spec_of(grant: GrantRow) -> RoleGrantSpec:
    return RoleGrantSpec(
        assignment_name=grant.assignment_name,
        principal_object_id=grant.principal_object_id,
        role_name=grant.role,
        compute=grant.cluster,
        scope=grant.scope,
        mode=grant.mode,
        description="removed outside the bot",
        expires_at=grant.expires_at,
    )


def test_an_extension_interrupted_before_it_was_marked_done_is_not_given_twice(
    pim_core: Core, clock: ManualClock
) -> None:
    from sqlalchemy import update

    grant = granted(pim_core)
    clock.advance(WARNED)
    extension = ask_to_extend(pim_core)
    assert pim_core.service.handle_text("bob", f"/aml approve {extension}").ok
    # As if the process had died after extending, before the request was marked done.
    with pim_core.store.transaction() as session:
        session.execute(
            update(RequestRow)
            .where(RequestRow.id == extension)
            .values(status=RequestStatus.EXECUTING.value, finished_at=None)
        )
    clock.advance(timedelta(minutes=1))  # its lease, taken when it was approved, ran out

    assert pim_core.service.workflow.resume_stalled() == [extension]

    new_end = grant.expires_at + timedelta(hours=2)
    [extended] = grants(pim_core)
    assert extended.expires_at == new_end
    assert assignment_ends(pim_core) == [new_end]
    assert request(pim_core, extension).status == RequestStatus.SUCCEEDED
