"""Break-glass: a member self-approves short access when policy allows; every lead is told
at once; a lead must review it afterwards, and a denied review ends the access."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from approvals import leases
from approvals.config import AppConfig
from approvals.config_access import BreakGlassPolicy
from approvals.payloads import AccessPayload
from approvals.scheduled import run_due
from approvals.tables import GrantRow, RequestRow
from approvals.wording import describe_request
from bot.wiring import Core
from tests.notify.conftest import notices
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace

EMERGENCY = 'access request gpu-cluster --emergency --for 30m --reason "prod model down"'


def with_break_glass(config: AppConfig, **changes: object) -> AppConfig:
    ws = config.workspaces["demo"]
    policy = ws.policy.model_copy(
        update={"break_glass": BreakGlassPolicy.model_validate({"allowed": True, **changes})}
    )
    return config.model_copy(
        update={"workspaces": {"demo": ws.model_copy(update={"policy": policy})}}
    )


@pytest.fixture
def glass(
    make_core: Callable[[AppConfig, str], Core], demo_config: AppConfig, sqlite_url: str
) -> Core:
    return make_core(with_break_glass(demo_config), sqlite_url)


def test_break_glass_is_refused_where_policy_does_not_allow_it(sqlite_core: Core) -> None:
    reply = sqlite_core.service.handle_text("alice", EMERGENCY)
    assert not reply.ok
    assert "rule `policy.break_glass.allowed` is false" in reply.text


def test_break_glass_grants_at_once_and_tells_every_lead(glass: Core) -> None:
    reply = glass.service.handle_text("alice", EMERGENCY)
    assert reply.ok, reply.text
    assert "Break-glass: Request #1 done: alice has access to `gpu-cluster`" in reply.text
    assert "one must review this use afterwards (request #2)" in reply.text
    with glass.store.transaction() as session:
        grant = session.scalars(select(GrantRow)).one()
        access = session.get(RequestRow, 1)
        review = session.get(RequestRow, 2)
        assert access is not None and review is not None
        assert access.decided_by == "break-glass"
        assert isinstance(access.payload, AccessPayload) and access.payload.review_request == 2
        assert review.action == "review" and review.status == "pending"
    assert grant.expires_at - grant.granted_at == timedelta(minutes=30)
    backend = glass.backends("demo")
    assert isinstance(backend, LocalWorkspace) and len(backend.role_assignments()) == 1
    to_bob = [p["text"] for p in notices(glass) if p["person"] == "bob"]
    assert any("alice used break-glass access to `gpu-cluster`" in t for t in to_bob), to_bob
    card = describe_request(review, glass.config).as_text()
    assert "#2 Review break-glass access to gpu-cluster" in card


def test_break_glass_longer_than_policy_allows_names_the_rule(glass: Core) -> None:
    reply = glass.service.handle_text("alice", EMERGENCY.replace("--for 30m", "--for 3h"))
    assert not reply.ok
    assert "rule `policy.break_glass.max_duration`: at most 1h" in reply.text


def test_only_listed_members_may_break_the_glass(
    make_core: Callable[[AppConfig, str], Core], demo_config: AppConfig, sqlite_url: str
) -> None:
    core = make_core(with_break_glass(demo_config, members=["carol"]), sqlite_url)
    reply = core.service.handle_text("alice", EMERGENCY)
    assert not reply.ok and "`policy.break_glass.members`" in reply.text


def test_the_review_is_tracked_like_a_request(glass: Core) -> None:
    assert glass.service.handle_text("alice", EMERGENCY).ok
    approved = glass.service.handle_text("bob", "approve 2")
    assert approved.ok, approved.text
    assert "bob found the break-glass use #1 by alice justified" in approved.text
    listed = glass.service.handle_text("bob", "request show 2")
    assert "done" in listed.text


def test_the_access_request_is_marked_for_review(glass: Core) -> None:
    assert glass.service.handle_text("alice", EMERGENCY).ok
    shown = glass.service.handle_text("alice", "request show 1")
    assert "Break-glass: self-approved in an emergency, as policy allows; marked for review: " in (
        shown.text
    )
    assert "request #2" in shown.text


def test_a_denied_review_ends_the_access(glass: Core, clock: ManualClock) -> None:
    assert glass.service.handle_text("alice", EMERGENCY).ok
    denied = glass.service.handle_text("bob", 'deny 2 --reason "not an emergency"')
    assert denied.ok, denied.text
    with glass.store.transaction() as session:
        grant = session.scalars(select(GrantRow)).one()
    assert grant.status == "revoked"
    told = [p["text"] for p in notices(glass) if p["person"] == "alice"]
    assert any("found the break-glass use not justified on review" in t for t in told), told


class ProcessDied(BaseException):
    """The process being killed: nothing in the bot catches it."""


def role_assignments(core: Core) -> list[object]:
    backend = core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    return list(backend.role_assignments())


def the_grant(core: Core) -> GrantRow:
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow)).one()


def test_a_review_denied_by_a_process_that_died_before_revoking_still_ends_the_access(
    glass: Core, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The denial is recorded, then the process dies before the revocation starts: the
    deny handled again finds the review no longer pending, so only a sweep can end it."""
    assert glass.service.handle_text("alice", EMERGENCY).ok

    def dies(*args: object) -> None:
        raise ProcessDied

    with monkeypatch.context() as patched:
        patched.setattr(glass.service.workflow, "deny_review", dies)
        with pytest.raises(ProcessDied):
            glass.service.handle_text("bob", 'deny 2 --reason "not an emergency"')
    again = glass.service.handle_text("bob", 'deny 2 --reason "not an emergency"')
    assert not again.ok and "no longer pending" in again.text, again.text
    assert the_grant(glass).status == "active" and len(role_assignments(glass)) == 1

    clock.advance(timedelta(seconds=5))  # the next round of the sweeps, well before expiry
    assert run_due(glass, glass.service.workflow, clock.now()).revoked == [the_grant(glass).id]
    assert the_grant(glass).status == "revoked" and role_assignments(glass) == []
    assert the_grant(glass).revoked_by == "bob"
    told = [p["text"] for p in notices(glass) if p["person"] == "alice"]
    assert sum("not justified on review" in t for t in told) == 1, told


def test_a_review_denied_while_the_access_is_still_being_given_ends_it_once_given(
    glass: Core, clock: ManualClock
) -> None:
    """Azure gave the access, then the process died before the grant was written down: the
    lead denies the review meanwhile (no grant to revoke yet); the resumed carry-out writes
    the grant, and the sweep takes it away."""
    real = glass.backends("demo")

    class DiesAfterTheGrant:
        def grant_cluster_access(self, grant: object) -> object:
            real.grant_cluster_access(grant)  # type: ignore[arg-type]
            raise ProcessDied

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    glass.backends.install("demo", DiesAfterTheGrant())  # type: ignore[arg-type]
    with pytest.raises(ProcessDied):
        glass.service.handle_text("alice", EMERGENCY)
    glass.backends.install("demo", real)
    assert glass.service.handle_text("bob", 'deny 2 --reason "not an emergency"').ok

    clock.advance(leases.LEASE + timedelta(seconds=1))
    assert run_due(glass, glass.service.workflow, clock.now()).resumed == [1]
    assert the_grant(glass).status == "active"  # written by the resumed carry-out
    clock.advance(timedelta(seconds=5))
    assert run_due(glass, glass.service.workflow, clock.now()).revoked == [the_grant(glass).id]
    assert the_grant(glass).status == "revoked" and role_assignments(glass) == []


def test_a_review_not_done_in_time_expires_and_says_so(glass: Core, clock: ManualClock) -> None:
    assert glass.service.handle_text("alice", EMERGENCY).ok
    clock.advance(timedelta(days=2, seconds=1))
    assert glass.service.workflow.expire_pending_requests() == [2]
