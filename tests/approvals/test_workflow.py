"""The approval workflow, driven through the core exactly as an edge drives it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from approvals.config import AppConfig
from approvals.states import RequestStatus
from approvals.tables import AuditRow, GrantRow, OutboxRow, RequestRow
from bot.wiring import Core
from tests.paths import EXAMPLE_CONFIG
from workspaces.clock import ManualClock

ENV = "azureml:AzureML-sklearn-1.5@latest"


def ask_access(core: Core, who: str = "alice", cluster: str = "gpu-cluster") -> int:
    reply = core.service.handle_text(
        who, f'/aml access request {cluster} --for 2h --reason "fine-tune BERT"'
    )
    assert reply.ok, reply.text
    assert reply.request_id is not None
    return reply.request_id


def status_of(core: Core, request_id: int) -> str:
    with core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        return row.status


def test_access_request_is_pending_with_an_id(core: Core) -> None:
    request_id = ask_access(core)
    assert status_of(core, request_id) == RequestStatus.PENDING
    reply = core.service.handle_text("alice", "/aml request list")
    assert f"#{request_id}" in reply.text and "waiting for a team lead" in reply.text


def test_requester_cannot_approve_own_request(core: Core) -> None:
    request_id = ask_access(core)
    reply = core.service.handle_text("alice", f"/aml approve {request_id}")
    assert not reply.ok
    assert "only team leads" in reply.text.lower()
    assert status_of(core, request_id) == RequestStatus.PENDING


def test_lead_cannot_approve_own_request(core: Core, clock: ManualClock) -> None:
    # bob is the only lead: his own datastore request would need another lead.
    reply = core.service.handle_text(
        "bob", "/aml access request gpu-cluster --for 1h --reason 'try it out'"
    )
    assert not reply.ok
    assert "other than you" in reply.text


def test_lead_approval_grants_access_with_expiry(core: Core, clock: ManualClock) -> None:
    request_id = ask_access(core)
    reply = core.service.handle_text("bob", f"/aml approve #{request_id}")
    assert reply.ok, reply.text
    assert "until" in reply.text and "10 minutes" in reply.text
    assert status_of(core, request_id) == RequestStatus.SUCCEEDED
    with core.store.transaction() as session:
        grant = session.scalars(select(GrantRow)).one()
    assert grant.grantee == "alice" and grant.cluster == "gpu-cluster"
    assert grant.expires_at == clock.now() + timedelta(hours=2)
    listing = core.service.handle_text("alice", "/aml access list")
    assert "gpu-cluster" in listing.text and "2h" in listing.text


def test_second_approval_does_not_execute_twice(core: Core) -> None:
    request_id = ask_access(core)
    assert core.service.handle_text("bob", f"/aml approve {request_id}").ok
    again = core.service.handle_text("bob", f"/aml approve {request_id}")
    assert not again.ok
    assert f"You already approved #{request_id}; it has been carried out" in again.text
    with core.store.transaction() as session:
        assert len(session.scalars(select(GrantRow)).all()) == 1


def test_job_with_grant_runs_at_once_and_shows_in_status(core: Core) -> None:
    request_id = ask_access(core)
    core.service.handle_text("bob", f"/aml approve {request_id}")
    reply = core.service.handle_text(
        "alice",
        f'/aml job submit --compute gpu-cluster --environment {ENV} --command "python train.py"',
    )
    assert reply.ok, reply.text
    assert "submitted on `gpu-cluster`" in reply.text
    job_name = reply.text.split("`")[1]
    status = core.service.handle_text("alice", f"/aml job status {job_name}")
    assert status.ok and "Queued" in status.text
    mine = core.service.handle_text("alice", "/aml job list --mine")
    assert job_name in mine.text


def test_job_without_grant_is_refused_with_the_access_command(core: Core) -> None:
    reply = core.service.handle_text(
        "carol",
        f'/aml job submit --compute gpu-cluster --environment {ENV} --command "python train.py"',
    )
    assert not reply.ok
    assert "/aml access request gpu-cluster" in reply.text


def carol_in_two_workspaces(demo_config: AppConfig) -> AppConfig:
    demo = demo_config.workspaces["demo"]
    research = demo.model_copy(
        update={"name": "research", "channel": None, "data_scientists": ["carol"]}
    )
    return demo_config.model_copy(update={"workspaces": {"demo": demo, "research": research}})


def test_suggested_access_command_names_the_workspace_when_it_must(
    sqlite_url: str, make_core: Callable[..., Core], demo_config: AppConfig
) -> None:
    """carol belongs to two workspaces and types in a DM (no channel): the command the
    refusal suggests must work there as it is, so it names the workspace."""
    core = make_core(carol_in_two_workspaces(demo_config), sqlite_url)
    reply = core.service.handle_text(
        "carol",
        f"/aml job submit --workspace demo --compute gpu-cluster --environment {ENV} "
        f'--command "python train.py"',
    )
    assert not reply.ok
    suggested = reply.text.split("`")[-2]
    assert suggested.startswith("/aml access request gpu-cluster --workspace demo --for ")
    followed = core.service.handle_text("carol", suggested.replace("what you need it for", "bert"))
    assert followed.ok and "is waiting for a team lead of `demo`" in followed.text


def test_suggested_access_command_stays_short_for_a_single_workspace(core: Core) -> None:
    reply = core.service.handle_text(
        "carol",
        f'/aml job submit --compute gpu-cluster --environment {ENV} --command "python train.py"',
    )
    assert "`/aml access request gpu-cluster --for " in reply.text


def test_typed_decisions_on_another_workspaces_request_reveal_nothing_of_it(
    sqlite_url: str, make_core: Callable[..., Core], demo_config: AppConfig
) -> None:
    demo = demo_config.workspaces["demo"].model_copy(update={"data_scientists": ["carol"]})
    research = demo.model_copy(
        update={"name": "research", "channel": None, "data_scientists": ["alice"]}
    )
    core = make_core(
        demo_config.model_copy(update={"workspaces": {"demo": demo, "research": research}}),
        sqlite_url,
    )
    request_id = ask_access(core)  # alice's, in `research`
    for typed in (
        f"/aml approve {request_id}",
        f"/aml deny {request_id} --reason 'not for you'",
        f"/aml request cancel {request_id}",
        f"/aml request show {request_id}",
    ):
        reply = core.service.handle_text("carol", typed)
        assert not reply.ok
        assert f"There is no request #{request_id} in a workspace you belong to" in reply.text
        assert "research" not in reply.text and "bob" not in reply.text
        assert "alice" not in reply.text and "gpu-cluster" not in reply.text
    assert status_of(core, request_id) == RequestStatus.PENDING


def test_shared_cluster_needs_no_grant(core: Core) -> None:
    reply = core.service.handle_text(
        "carol",
        f'/aml job submit --compute cpu-cluster --environment {ENV} --command "python x.py"',
    )
    assert reply.ok, reply.text


def test_instances_beyond_cluster_nodes_name_the_limit(core: Core) -> None:
    reply = core.service.handle_text(
        "carol",
        f"/aml job submit --compute cpu-cluster --environment {ENV} --command x --instances 9",
    )
    assert not reply.ok
    assert "--instances" in reply.text and "at most 4" in reply.text


def test_datastore_request_is_denied_with_reason_reaching_requester(core: Core) -> None:
    reply = core.service.handle_text(
        "alice",
        "/aml datastore register trainingdata --kind blob --account contosodata "
        "--container training",
    )
    assert reply.ok and reply.request_id
    denied = core.service.handle_text(
        "bob", f'/aml deny {reply.request_id} --reason "use the shared lake instead"'
    )
    assert denied.ok, denied.text
    with core.store.transaction() as session:
        notices = [
            row.payload
            for row in session.scalars(select(OutboxRow).where(OutboxRow.kind == "person.notice"))
        ]
    assert any(
        n["person"] == "alice" and "use the shared lake instead" in n["text"] for n in notices
    )


def test_lead_registers_datastore_at_once(core: Core) -> None:
    reply = core.service.handle_text(
        "bob", "/aml datastore register lake --kind adls-gen2 --account contosolake --container raw"
    )
    assert reply.ok, reply.text
    listing = core.service.handle_text("alice", "/aml datastore list")
    assert "`lake`" in listing.text and "workspaceblobstore" in listing.text


def test_existing_datastore_name_is_refused_before_asking_a_lead(core: Core) -> None:
    reply = core.service.handle_text(
        "alice",
        "/aml datastore register workspaceblobstore --kind blob --account acct01 --container data1",
    )
    assert not reply.ok and "already has a datastore" in reply.text


def test_audit_is_for_leads_only(core: Core) -> None:
    request_id = ask_access(core)
    core.service.handle_text("bob", f"/aml approve {request_id}")
    bob = core.service.handle_text("bob", "/aml audit")
    assert bob.ok and "access.requested" in bob.text and "access.executed" in bob.text
    alice = core.service.handle_text("alice", "/aml audit")
    assert not alice.ok and "team leads only" in alice.text


def test_audit_says_what_each_request_asked_for(core: Core) -> None:
    request_id = ask_access(core)
    bob = core.service.handle_text("bob", "/aml audit")
    line = next(x for x in bob.text.splitlines() if "access.requested" in x)
    assert f"#{request_id} (access to gpu-cluster for " in line and line.endswith("-> pending")


def test_requester_can_cancel_while_pending(core: Core) -> None:
    request_id = ask_access(core)
    assert core.service.handle_text("alice", f"/aml request cancel {request_id}").ok
    assert status_of(core, request_id) == RequestStatus.CANCELLED
    late = core.service.handle_text("bob", f"/aml approve {request_id}")
    assert not late.ok and "cancelled" in late.text


def test_other_person_cannot_cancel(core: Core) -> None:
    request_id = ask_access(core)
    reply = core.service.handle_text("carol", f"/aml request cancel {request_id}")
    assert not reply.ok and "Only alice" in reply.text


def test_pending_request_expires_and_requester_is_told(core: Core, clock: ManualClock) -> None:
    request_id = ask_access(core)
    clock.advance(timedelta(hours=25))
    assert core.service.workflow.expire_pending_requests() == [request_id]
    assert status_of(core, request_id) == RequestStatus.EXPIRED
    late = core.service.handle_text("bob", f"/aml approve {request_id}")
    assert not late.ok


def test_expired_grant_is_revoked_by_the_sweep(core: Core, clock: ManualClock) -> None:
    request_id = ask_access(core)
    core.service.handle_text("bob", f"/aml approve {request_id}")
    clock.advance(timedelta(hours=2, seconds=1))
    revoked = core.service.workflow.revoke_expired_grants()
    assert len(revoked) == 1
    assert core.service.workflow.revoke_expired_grants() == []
    with core.store.transaction() as session:
        assert session.scalars(select(GrantRow)).one().status == "revoked"


def test_grantee_can_give_up_a_grant(core: Core) -> None:
    request_id = ask_access(core)
    core.service.handle_text("bob", f"/aml approve {request_id}")
    reply = core.service.handle_text("alice", "/aml access revoke 1")
    assert reply.ok, reply.text
    assert "10 minutes" in reply.text
    again = core.service.handle_text("alice", "/aml access revoke 1")
    assert not again.ok and "already revoked" in again.text


def test_two_approvers_policy_needs_two_distinct_leads(
    sqlite_url: str, make_core: Callable[..., Core]
) -> None:
    from approvals.config import parse_config

    text = EXAMPLE_CONFIG.read_text()
    text = (
        text.replace("team_leads: [bob]", "team_leads: [bob, carol]")
        .replace("two_approvers: []", "two_approvers: [access]")
        .replace("data_scientists: [alice, carol]", "data_scientists: [alice]")
    )
    core = make_core(parse_config(text), sqlite_url)
    request_id = ask_access(core)
    first = core.service.handle_text("bob", f"/aml approve {request_id}")
    assert first.ok and "1 of 2" in first.text
    twice = core.service.handle_text("bob", f"/aml approve {request_id}")
    assert not twice.ok and "already approved" in twice.text
    second = core.service.handle_text("carol", f"/aml approve {request_id}")
    assert second.ok and status_of(core, request_id) == RequestStatus.SUCCEEDED


def test_every_step_is_audited_with_actor_and_outcome(core: Core) -> None:
    request_id = ask_access(core)
    core.service.handle_text("alice", f"/aml approve {request_id}")
    core.service.handle_text("bob", f"/aml approve {request_id}")
    with core.store.transaction() as session:
        events = [(r.actor, r.action, r.outcome) for r in session.scalars(select(AuditRow))]
    assert ("alice", "access.requested", "pending") in events
    assert ("alice", "request.approve", "refused") in events
    assert ("bob", "access.approved", "approved") in events
    assert ("amlbot", "access.executed", "succeeded") in events


def test_secret_is_refused_and_never_stored(core: Core) -> None:
    key = "A" * 86 + "=="
    reply = core.service.handle_text(
        "alice",
        f"/aml datastore register x --kind blob --account acct --container c --description {key}",
    )
    assert not reply.ok and key not in reply.text
    with core.store.transaction() as session:
        stored = " ".join(
            str(row.detail) + str(row.target) for row in session.scalars(select(AuditRow))
        )
        stored += " ".join(str(r.payload) for r in session.scalars(select(RequestRow)))
    assert key not in stored


def test_request_left_executing_is_finished_once_its_lease_runs_out(
    core: Core, clock: ManualClock
) -> None:
    from approvals import leases
    from approvals.states import transition

    request_id = ask_access(core)
    with core.store.transaction() as session:
        transition(
            session,
            request_id,
            RequestStatus.PENDING,
            RequestStatus.APPROVED,
            decided_by="bob",
            decided_at=clock.now(),
        )
        transition(
            session,
            request_id,
            RequestStatus.APPROVED,
            RequestStatus.EXECUTING,
            **leases.taken(clock.now(), "a-process-that-died"),
        )
    assert core.service.workflow.resume_stalled() == []  # its holder may still be at work
    clock.advance(leases.LEASE)
    assert core.service.workflow.resume_stalled() == [request_id]
    assert status_of(core, request_id) == RequestStatus.SUCCEEDED
    assert core.service.workflow.resume_stalled() == []
    with core.store.transaction() as session:
        assert len(session.scalars(select(GrantRow)).all()) == 1


def test_secret_refusal_is_audited_by_kind_only(core: Core) -> None:
    token = "xoxb-1234567890-abcdefghijkl"
    reply = core.service.handle_text("alice", f"/aml deny 1 --reason '{token}'")
    assert not reply.ok and "a Slack token" in reply.text
    with core.store.transaction() as session:
        (event,) = [r for r in session.scalars(select(AuditRow)) if r.action == "command.refused"]
    assert (event.actor, event.outcome, event.detail) == (
        "alice",
        "secret",
        {"detail_kind": "a Slack token"},
    )


def test_simulated_studio_links_name_the_configured_azure_workspace(core: Core) -> None:
    reply = core.service.handle_text(
        "bob",
        f'/aml job submit --compute cpu-cluster --environment {ENV} --command "python train.py"',
    )
    assert reply.ok, reply.text
    demo = core.config.workspaces["demo"].azure
    assert f"wsid={demo.workspace_scope}" in reply.text
    assert "/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/rg-amlbot-demo/" in (
        reply.text
    )
    assert "subscriptions/local" not in reply.text


def test_a_vote_is_kept_only_with_the_approval_it_completes(core: Core) -> None:
    """The process dies (here: the database refuses) between the lead's vote and the
    approval it completes: no vote is left behind, so the lead's retried click approves."""
    from sqlalchemy import event

    from approvals.tables import VoteRow

    request_id = ask_access(core)

    def refuse_the_approval(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE REQUESTS") and "approved" in str(
            parameters
        ):
            raise RuntimeError("the process died here")

    event.listen(core.store.engine, "before_cursor_execute", refuse_the_approval)
    try:
        assert not core.service.handle_text("bob", f"/aml approve {request_id}").ok
    finally:
        event.remove(core.store.engine, "before_cursor_execute", refuse_the_approval)
    with core.store.transaction() as session:
        assert session.scalars(select(VoteRow)).all() == []
    assert status_of(core, request_id) == "pending"

    again = core.service.handle_text("bob", f"/aml approve {request_id}")
    assert again.ok and "Approved" in again.text
    assert status_of(core, request_id) == "succeeded"
