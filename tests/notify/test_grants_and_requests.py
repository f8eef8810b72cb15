"""Grants and requests against the clock: revoked at expiry by the next sweep and, after
downtime, at start-up; the grantee warned once with an Extend offer; leads reminded once
before a request expires; the request expired with notice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from approvals.notice_kinds import GRANT_EXPIRING, REQUEST_REMINDER
from approvals.reminders import extension_request, remind_pending_requests, warn_expiring_grants
from approvals.scheduled import run_due, run_startup
from approvals.tables import GrantRow, RequestRow
from bot.scheduler import NotificationScheduler
from bot.wiring import Core
from shared.errors import PermissionRefusedError
from tests.notify.conftest import notices, replica_of
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace

ACCESS = 'access request gpu-cluster --for 2h --reason "fine-tune BERT"'


def granted(core: Core) -> GrantRow:
    assert core.service.handle_text("alice", ACCESS).ok
    assert core.service.handle_text("bob", "approve 1").ok
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow)).one()


def assignments(core: Core) -> list[str]:
    backend = core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    return [a.assignment_name for a in backend.role_assignments()]


def grant_status(core: Core) -> str:
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow.status)).one()


def test_an_expired_grant_is_revoked_at_the_next_sweep(core: Core, clock: ManualClock) -> None:
    grant = granted(core)
    clock.advance(timedelta(hours=2) - timedelta(seconds=1))
    assert run_due(core, core.service.workflow, clock.now()).revoked == []
    clock.advance(timedelta(seconds=1))

    assert run_due(core, core.service.workflow, clock.now()).revoked == [grant.id]
    assert grant_status(core) == "revoked" and assignments(core) == []
    told = [p["text"] for p in notices(core) if p["person"] == "alice"]
    assert any("was revoked: it expired" in text for text in told)
    assert run_due(core, core.service.workflow, clock.now()).revoked == []  # never twice


def test_after_downtime_an_overdue_grant_is_revoked_at_start_up(
    core: Core, clock: ManualClock
) -> None:
    grant = granted(core)
    clock.advance(timedelta(hours=6))  # the bot was down when the grant expired
    restarted = replica_of(core)
    scheduler = NotificationScheduler(restarted, tick=timedelta(hours=1))
    try:
        scheduler.start()
        # Revoked by start() itself, before the first round and before serving anyone.
        assert grant_status(core) == "revoked" and assignments(core) == []
    finally:
        scheduler.stop()
        restarted.store.engine.dispose()
    assert run_startup(core.service.workflow).revoked == []
    assert grant.id


def test_overdue_pending_requests_expire_at_start_up_with_notice(
    core: Core, clock: ManualClock
) -> None:
    assert core.service.handle_text("alice", ACCESS).ok
    clock.advance(timedelta(days=2))
    assert run_startup(core.service.workflow).expired == [1]
    assert any("expired" in p["text"] for p in notices(core) if p["person"] == "alice")


def test_the_grantee_is_warned_once_before_expiry_with_an_extend_offer(
    core: Core, clock: ManualClock
) -> None:
    grant = granted(core)
    clock.advance(timedelta(hours=2) - timedelta(minutes=16))
    assert warn_expiring_grants(core, clock.now()) == []
    clock.advance(timedelta(minutes=1))
    assert warn_expiring_grants(core, clock.now()) == [grant.id]
    clock.advance(timedelta(minutes=5))
    assert warn_expiring_grants(core, clock.now()) == []

    (warning,) = notices(core, GRANT_EXPIRING)
    assert warning["person"] == "alice" and warning["grant_id"] == grant.id
    assert warning["text"] == (
        "Your access to `gpu-cluster` in `demo` (grant #1) ends 2026-01-05 11:00 UTC, in 15m. "
        "Need longer? Extend asks a team lead for another 2h."
    )


def test_extend_asks_for_the_same_cluster_and_duration_again(
    core: Core, clock: ManualClock
) -> None:
    grant = granted(core)
    command = extension_request(core, "alice", grant.id)
    assert (command.workspace, command.cluster) == ("demo", "gpu-cluster")
    assert command.duration == timedelta(hours=2)
    with pytest.raises(PermissionRefusedError, match="belongs to alice"):
        extension_request(core, "carol", grant.id)


def test_extend_within_the_warning_window_opens_a_request_for_the_leads(
    core: Core, clock: ManualClock
) -> None:
    grant = granted(core)
    clock.advance(timedelta(hours=2) - timedelta(minutes=10))
    reply = core.service.run("alice", extension_request(core, "alice", grant.id))
    assert reply.ok and "is waiting for a team lead" in reply.text, reply.text
    approved = core.service.handle_text("bob", f"/aml approve {reply.request_id}")
    assert approved.ok, approved.text
    with core.store.transaction() as session:
        grants = session.scalars(select(GrantRow)).all()
    assert len(grants) == 1
    assert grants[0].expires_at == grant.expires_at + timedelta(hours=2)


def test_leads_are_reminded_once_before_a_request_expires(core: Core, clock: ManualClock) -> None:
    assert core.service.handle_text("alice", ACCESS).ok
    clock.advance(timedelta(hours=21))
    assert remind_pending_requests(core, clock.now()) == []
    clock.advance(timedelta(hours=1, seconds=1))
    assert remind_pending_requests(core, clock.now()) == [1]
    assert remind_pending_requests(core, clock.now()) == []

    reminders = notices(core, REQUEST_REMINDER)
    assert [(p["leads"], p["request_id"]) for p in reminders] == [(["bob"], 1)]
    assert "expires 2026-01-06 09:00 UTC, in 1h59m" in reminders[0]["text"]
    with core.store.transaction() as session:
        request = session.get(RequestRow, 1)
        assert request is not None and request.reminded_at == clock.now()
