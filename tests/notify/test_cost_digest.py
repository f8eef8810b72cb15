"""The weekly cost digest: to each lead of a workspace with a budget, once a week."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from approvals.config import load_config
from approvals.payloads import JobPayload
from approvals.scheduled import run_due
from approvals.states import RequestStatus
from approvals.sweep_tables import IdleDigestRow, IdleItemRow
from approvals.tables import JobRow, RequestRow
from bot.wiring import Core
from tests.notify.conftest import notices
from tests.paths import RULES_CONFIG
from workspaces.clock import ManualClock


@pytest.fixture
def budget_core(make_core: Callable[..., Core], database_url: str) -> Core:
    return make_core(load_config(RULES_CONFIG), database_url)


def finished_job(core: Core, clock: ManualClock, who: str, hours: float, nodes: int) -> None:
    now = clock.now()
    with core.store.transaction() as session:
        request = RequestRow(
            workspace="demo",
            action="job",
            requester=who,
            payload=JobPayload(
                compute="gpu-cluster",
                environment="e@latest",
                command="python t.py",
                instances=nodes,
            ),
            summary="a job",
            status=RequestStatus.SUCCEEDED.value,
            created_at=now,
        )
        session.add(request)
        session.flush()
        session.add(
            JobRow(
                workspace="demo",
                name=f"amlbot-{request.id}",
                request_id=request.id,
                requester=who,
                compute="gpu-cluster",
                status="Completed",
                submitted_at=now - timedelta(hours=hours),
                updated_at=now,
                ended_at=now,
                following=False,
            )
        )


def fixed_idle_cluster(core: Core, clock: ManualClock, hourly: float, ago: timedelta) -> None:
    with core.store.transaction() as session:
        digest = IdleDigestRow(workspace="demo", slot=1, created_at=clock.now() - ago)
        session.add(digest)
        session.flush()
        session.add(
            IdleItemRow(
                digest_id=digest.id,
                workspace="demo",
                compute="cpu-cluster",
                fingerprint="min=1",
                finding={"hourly_cost": hourly},
                handled_by="bob",
                handled_note="minimum set to 0 by bob (#9)",
                handled_at=clock.now() - ago,
            )
        )


def digests(core: Core) -> list[dict[str, object]]:
    return [n for n in notices(core) if "Weekly cost digest" in str(n["text"])]


def test_leads_get_top_spenders_jobs_by_cost_and_idle_cost_avoided(
    budget_core: Core, clock: ManualClock
) -> None:
    finished_job(budget_core, clock, "alice", hours=10, nodes=2)  # $61.20
    finished_job(budget_core, clock, "carol", hours=2, nodes=1)  # $6.12
    fixed_idle_cluster(budget_core, clock, hourly=0.293, ago=timedelta(hours=10))
    run_due(budget_core, budget_core.service.workflow, clock.now())
    sent = digests(budget_core)
    assert sorted(str(n["person"]) for n in sent) == ["bob", "dave"]
    text = str(sent[0]["text"])
    assert "Spent this week: $67.32 (2 jobs, idle compute $0.00)" in text
    assert "month to date: $67.32 of $500.00 this month (13%)" in text
    assert "Top spenders: alice $61.20, carol $6.12" in text
    assert "`amlbot-1` by alice on `gpu-cluster` x2: $61.20" in text
    assert "Idle cost avoided by the bot's fixes: $2.93" in text


def test_the_digest_is_sent_once_a_week(budget_core: Core, clock: ManualClock) -> None:
    run_due(budget_core, budget_core.service.workflow, clock.now())
    clock.advance(timedelta(days=3))
    run_due(budget_core, budget_core.service.workflow, clock.now())
    assert len(digests(budget_core)) == 2  # bob and dave, once
    clock.advance(timedelta(days=4))
    run_due(budget_core, budget_core.service.workflow, clock.now())
    assert len(digests(budget_core)) == 4


def test_a_workspace_without_a_budget_gets_no_digest(core: Core, clock: ManualClock) -> None:
    run_due(core, core.service.workflow, clock.now())
    assert digests(core) == []


def idle_digest_seen(
    core: Core, clock: ManualClock, slot: int, idle_since_ago: timedelta, hourly: float
) -> None:
    """An idle digest posted now, reporting cpu-cluster idle since `idle_since_ago`."""
    now = clock.now()
    with core.store.transaction() as session:
        digest = IdleDigestRow(workspace="demo", slot=slot, created_at=now)
        session.add(digest)
        session.flush()
        session.add(
            IdleItemRow(
                digest_id=digest.id,
                workspace="demo",
                compute="cpu-cluster",
                fingerprint="min=1",
                finding={
                    "hourly_cost": hourly,
                    "idle_since": (now - idle_since_ago).isoformat(),
                },
            )
        )


def test_idle_nodes_count_in_the_months_spend_once_per_episode(
    budget_core: Core, clock: ManualClock
) -> None:
    idle_digest_seen(budget_core, clock, 1, timedelta(hours=4), hourly=0.293)
    clock.advance(timedelta(hours=6))
    # The same episode seen again 6 h later: 10 h idle in all, counted once.
    idle_digest_seen(budget_core, clock, 2, timedelta(hours=10), hourly=0.293)
    run_due(budget_core, budget_core.service.workflow, clock.now())
    text = str(digests(budget_core)[0]["text"])
    assert "Spent this week: $2.93 (0 jobs, idle compute $2.93)" in text
    reply = budget_core.service.handle_text(
        "alice", "/aml access request gpu-cluster --for 2h --reason 'fine-tune'"
    )
    card = budget_core.service.handle_text("bob", f"/aml request show {reply.request_id}")
    assert "Spend: $2.93 of $500.00 this month" in card.text
