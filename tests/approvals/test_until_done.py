"""Grants that end with the work: revoked when the holder's last job on the cluster has
finished and nothing of theirs ran for the idle period, or at the time limit, whichever
comes first; the card and the message say which. On the simulated workspace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from approvals import outbox
from approvals.config import AppConfig, parse_config
from approvals.config_errors import ConfigError
from approvals.notice_kinds import GRANT_EXPIRING
from approvals.scheduled import run_due
from approvals.tables import GrantRow, RequestRow
from approvals.wording import describe_request
from bot.wiring import Core
from tests.notify.conftest import notices
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace
from workspaces.types import JobSpec

ENV = "azureml:AzureML-sklearn-1.5@latest"
UNTIL_DONE = 'access request gpu-cluster --until-done --for 8h --reason "fine-tune BERT"'


def local(core: Core) -> LocalWorkspace:
    backend = core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    return backend


def grant_of(core: Core) -> GrantRow:
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow)).one()


def granted_until_done(core: Core, text: str = UNTIL_DONE) -> GrantRow:
    reply = core.service.handle_text("alice", text)
    assert reply.ok, reply.text
    approved = core.service.handle_text("bob", f"approve {reply.request_id}")
    assert approved.ok, approved.text
    assert "until the work there is done" in approved.text
    return grant_of(core)


def submit(core: Core, seconds: int) -> str:
    reply = core.service.handle_text(
        "alice",
        f'job submit --compute gpu-cluster --environment {ENV} --command "sleep {seconds}"',
    )
    assert reply.ok, reply.text
    return reply.text.split("`")[1]


def sweep(core: Core, clock: ManualClock, step: timedelta) -> None:
    """Move the clock in one-minute rounds, running the sweeps as `serve` would."""
    end = clock.now() + step
    while clock.now() < end:
        clock.advance(min(timedelta(minutes=1), end - clock.now()))
        run_due(core, core.service.workflow, clock.now())


def test_the_grant_ends_after_the_last_job_and_the_idle_period(
    core: Core, clock: ManualClock
) -> None:
    grant = granted_until_done(core)
    assert grant.until_done and grant.expires_at == grant.granted_at + timedelta(hours=8)
    job = submit(core, 3600)
    # The job starts within a couple of minutes and runs an hour; then 30 min idle.
    sweep(core, clock, timedelta(minutes=95))
    ended = grant_of(core)
    assert ended.status == "revoked" and ended.end_reason == "work_done"
    assert local(core).role_assignments() == []
    told = [p["text"] for p in notices(core) if p["person"] == "alice"]
    assert any(
        f"was revoked: your work there ended: your last job `{job}` finished (Completed)" in t
        and "nothing of yours ran for 30m" in t
        for t in told
    ), told


def test_a_running_job_keeps_the_grant_past_the_idle_period(core: Core, clock: ManualClock) -> None:
    granted_until_done(core)
    submit(core, 3 * 3600)
    sweep(core, clock, timedelta(hours=2))
    grant = grant_of(core)
    assert grant.status == "active" and grant.work_seen_at is not None


def test_a_job_submitted_directly_with_the_sdk_counts_as_work(
    core: Core, clock: ManualClock
) -> None:
    granted_until_done(core)
    # Alice submits with her own identity (Azure records her principal name), not the bot.
    local(core).submit_job_directly(
        JobSpec(name="alice-sweep-1", compute="gpu-cluster", environment=ENV, command="sleep 7200"),
        created_by="alice@example.com",
    )
    sweep(core, clock, timedelta(minutes=100))
    assert grant_of(core).status == "active"
    sweep(core, clock, timedelta(minutes=60))  # the job ended at 2h; 30 min idle after it
    ended = grant_of(core)
    assert ended.status == "revoked" and ended.end_reason == "work_done"


def test_someone_elses_job_on_the_cluster_is_not_the_holders_work(
    core: Core, clock: ManualClock
) -> None:
    granted_until_done(core)
    local(core).submit_job_directly(
        JobSpec(name="carol-job", compute="gpu-cluster", environment=ENV, command="sleep 7200"),
        created_by="carol@example.com",
    )
    sweep(core, clock, timedelta(minutes=31))
    assert grant_of(core).end_reason == "work_done"


def test_the_time_limit_comes_first_and_the_card_says_so(core: Core, clock: ManualClock) -> None:
    granted_until_done(core, UNTIL_DONE.replace("--for 8h", "--for 1h"))
    submit(core, 3 * 3600)
    sweep(core, clock, timedelta(minutes=61))
    grant = grant_of(core)
    assert grant.status == "revoked" and grant.end_reason == "time_limit"
    told = [p["text"] for p in notices(core) if p["person"] == "alice"]
    assert any("its time limit was reached before your work ended" in t for t in told), told
    with core.store.transaction() as session:
        request = session.get(RequestRow, grant.request_id)
        assert request is not None
        card = describe_request(request, core.config).as_text()
    assert "Access: ended at its time limit" in card


def test_the_card_says_the_access_ended_with_the_work(core: Core, clock: ManualClock) -> None:
    grant = granted_until_done(core)
    with core.store.transaction() as session:
        request = session.get(RequestRow, grant.request_id)
        assert request is not None
        before = describe_request(request, core.config).as_text()
    assert "Duration: until the work is done: ends 30m after" in before
    sweep(core, clock, timedelta(minutes=31))
    with core.store.transaction() as session:
        request = session.get(RequestRow, grant.request_id)
        assert request is not None
        card = describe_request(request, core.config).as_text()
        updates = [
            row
            for row in session.scalars(select(outbox.OutboxRow))
            if row.kind == outbox.REQUEST_UPDATED
        ]
    assert "Access: ended with the work" in card
    assert updates, "the card is redrawn"


def test_the_holder_with_a_running_job_is_warned_before_the_time_limit(
    core: Core, clock: ManualClock
) -> None:
    grant = granted_until_done(core, UNTIL_DONE.replace("--for 8h", "--for 1h"))
    job = submit(core, 3 * 3600)
    sweep(core, clock, timedelta(minutes=44))
    assert notices(core, GRANT_EXPIRING) == []
    sweep(core, clock, timedelta(minutes=2))
    (warning,) = notices(core, GRANT_EXPIRING)
    assert warning["grant_id"] == grant.id and warning["person"] == "alice"
    assert f"while your job still runs there: `{job}`" in warning["text"]


def test_no_warning_when_nothing_runs_at_the_time_limit(core: Core, clock: ManualClock) -> None:
    config_idle = timedelta(hours=2)
    ws = core.config.workspaces["demo"]
    assert ws.policy.until_done.idle_period < config_idle
    granted_until_done(core, UNTIL_DONE.replace("--for 8h", "--for 1h"))
    sweep(core, clock, timedelta(minutes=50))
    assert notices(core, GRANT_EXPIRING) == []


def test_a_cluster_can_make_every_grant_end_with_the_work(
    make_core: object, demo_config: AppConfig, sqlite_url: str
) -> None:
    ws = demo_config.workspaces["demo"]
    clusters = [
        c.model_copy(update={"until_done": True}) if c.name == "gpu-cluster" else c
        for c in ws.clusters
    ]
    config = demo_config.model_copy(
        update={"workspaces": {"demo": ws.model_copy(update={"clusters": clusters})}}
    )
    assert callable(make_core)
    core = make_core(config, sqlite_url)
    reply = core.service.handle_text(
        "alice", 'access request gpu-cluster --reason "fine-tune BERT"'
    )
    assert "until the work there is done (at most 2d)" in reply.text, reply.text
    assert core.service.handle_text("bob", "approve 1").ok
    assert grant_of(core).until_done


def test_a_job_approved_without_a_grant_leaves_no_access_behind(
    make_core: object, demo_config: AppConfig, sqlite_url: str
) -> None:
    ws = demo_config.workspaces["demo"]
    jobs = ws.policy.jobs.model_copy(update={"without_grant": "approval"})
    policy = ws.policy.model_copy(update={"jobs": jobs})
    config = demo_config.model_copy(
        update={"workspaces": {"demo": ws.model_copy(update={"policy": policy})}}
    )
    assert callable(make_core)
    core = make_core(config, sqlite_url)
    asked = core.service.handle_text(
        "alice", f'job submit --compute gpu-cluster --environment {ENV} --command "sleep 60"'
    )
    assert asked.request_id is not None
    with core.store.transaction() as session:
        request = session.get(RequestRow, asked.request_id)
        assert request is not None
        card = describe_request(request, core.config).as_text()
    assert "Access: none granted: approving runs this one job, nothing more" in card
    done = core.service.handle_text("bob", f"approve {asked.request_id}")
    assert done.ok and "submitted on `gpu-cluster`" in done.text, done.text
    with core.store.transaction() as session:
        assert session.scalars(select(GrantRow)).all() == []
    assert local(core).role_assignments() == []
    again = core.service.handle_text(
        "alice", f'job submit --compute gpu-cluster --environment {ENV} --command "sleep 60"'
    )
    assert "is waiting for a team lead" in again.text  # the next job needs approval again


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            "until_done: {time_limit: 3d}",
            "workspaces.demo.policy.until_done.time_limit: rule 'a work-bound grant lasts at "
            "most policy.access.max_duration'",
        ),
        (
            "until_done: {idle_period: 0s}",
            "workspaces.demo.policy.until_done.idle_period: a duration must be longer than zero",
        ),
        (
            "until_done: {idle_perod: 10m}",
            "workspaces.demo.policy.until_done.idle_perod: unknown key",
        ),
    ],
)
def test_policy_errors_name_the_rule_and_key_path(policy: str, message: str) -> None:
    text = f"""
workspaces:
  demo:
    azure: {{subscription_id: s, resource_group: r, workspace_name: w}}
    team_leads: [U0BOB0001]
    policy:
      {policy}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert any(message in error for error in caught.value.errors), caught.value.errors
