"""The idle sweep on the demo workspace: one digest per workspace and sweep slot listing
exactly the idle computes with their costs; snoozed and recently alerted ones left out;
Stop / Set minimum to 0 / Set idle time by a lead at once, by anyone else through a request."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

from sqlalchemy import select

from approvals.idle.actions import act_on_item, snooze_item
from approvals.idle.digest import digest_items, sweep_idle
from approvals.notice_kinds import IDLE_DIGEST
from approvals.payloads import ComputePayload
from approvals.scheduled import run_due
from approvals.sweep_tables import IdleItemRow
from approvals.tables import AuditRow, RequestRow
from approvals.wording import describe_request
from bot.console import Console
from bot.wiring import Core
from tests.notify.conftest import notices, replica_of
from workspaces.clock import ManualClock
from workspaces.prices import BOOK, PriceQuote

HOUR = timedelta(hours=1)
SLOT = timedelta(minutes=15)  # the default sweep interval


def computes(core: Core, digest_id: int | None) -> list[str]:
    assert digest_id is not None
    return [item.compute for item in digest_items(core, digest_id)]


def item_id(core: Core, digest_id: int | None, compute: str) -> int:
    assert digest_id is not None
    return next(i.id for i in digest_items(core, digest_id) if i.compute == compute)


def westeurope_prices(clock: ManualClock, age: timedelta = timedelta(days=2)) -> None:
    """What a refresh two days ago fetched for the demo workspace (in westeurope)."""
    fetched = (clock.now() - age).date()
    BOOK.install(
        [
            PriceQuote("Standard_DS3_v2", "westeurope", False, 0.293, "retail", fetched),
            PriceQuote("Standard_DS11_v2", "westeurope", False, 0.185, "retail", fetched),
        ]
    )


def test_the_digest_lists_exactly_the_idle_computes_with_their_costs(
    core: Core, clock: ManualClock
) -> None:
    westeurope_prices(clock)
    clock.advance(HOUR)  # the notebook has not been used since the workspace started
    digest = sweep_idle(core, "demo", clock.now())

    assert computes(core, digest) == ["cpu-cluster", "alice-notebook"]  # not gpu-cluster
    (payload,) = notices(core, IDLE_DIGEST)
    assert payload["workspace"] == "demo" and payload["digest_id"] == digest
    assert payload["text"].splitlines() == [
        "Idle compute in `demo`: 2 items, ~$0.48/hour",
        "• Cluster `cpu-cluster` (STANDARD_DS3_V2): minimum nodes is 1, so they never scale "
        "down (recommended: 0). ~$0.29/hour",
        "• Compute instance `alice-notebook` (STANDARD_DS11_V2): running with no activity "
        "since 2026-01-05 09:00 UTC; no idle shutdown is set; no job the bot follows runs on "
        "it. ~$0.18/hour, ~$0.18 so far",
        "Prices: Retail Prices, 2 days old, westeurope (estimates).",
    ]


def test_unknown_prices_are_not_added_up_as_nothing(core: Core, clock: ManualClock) -> None:
    BOOK.clear()  # no price known for any size (the tests' own prices are gone)
    clock.advance(HOUR)
    sweep_idle(core, "demo", clock.now())
    (payload,) = notices(core, IDLE_DIGEST)
    assert payload["text"].splitlines()[0] == (
        "Idle compute in `demo`: 2 items, an unknown cost per hour"
    )


def test_a_total_with_some_prices_unknown_is_a_lower_bound(core: Core, clock: ManualClock) -> None:
    fetched = (clock.now() - timedelta(days=2)).date()
    BOOK.clear()  # the cluster's size priced, the notebook's not
    BOOK.install([PriceQuote("Standard_DS3_v2", "westeurope", False, 0.293, "retail", fetched)])
    clock.advance(HOUR)
    reply = core.service.handle_text("alice", "/aml idle")
    assert "Together at least ~$0.29/hour." in reply.text


def test_an_unchanged_compute_is_not_alerted_again_within_the_realert_interval(
    core: Core, clock: ManualClock
) -> None:
    clock.advance(HOUR)
    assert sweep_idle(core, "demo", clock.now()) is not None
    clock.advance(SLOT)
    assert sweep_idle(core, "demo", clock.now()) is None  # nothing new: no message at all
    clock.advance(timedelta(hours=4))
    again = sweep_idle(core, "demo", clock.now())
    assert computes(core, again) == ["cpu-cluster", "alice-notebook"]
    assert len(notices(core, IDLE_DIGEST)) == 2


def test_a_snoozed_compute_is_skipped_until_the_snooze_ends(core: Core, clock: ManualClock) -> None:
    clock.advance(HOUR)
    first = sweep_idle(core, "demo", clock.now())
    reply = snooze_item(core, item_id(core, first, "alice-notebook"), "alice", "1d")
    assert reply.ok and "snoozed until 2026-01-06 10:00 UTC" in reply.text

    clock.advance(timedelta(hours=5))
    assert computes(core, sweep_idle(core, "demo", clock.now())) == ["cpu-cluster"]
    clock.advance(timedelta(hours=20))
    assert "alice-notebook" in computes(core, sweep_idle(core, "demo", clock.now()))


def test_snoozed_until_changed_stays_quiet_until_the_compute_changes(
    core: Core, clock: ManualClock
) -> None:
    clock.advance(HOUR)
    first = sweep_idle(core, "demo", clock.now())
    assert snooze_item(core, item_id(core, first, "cpu-cluster"), "carol", "changed").ok

    clock.advance(timedelta(days=2))
    assert "cpu-cluster" not in computes(core, sweep_idle(core, "demo", clock.now()))
    core.backends("demo").set_cluster_min_nodes("cpu-cluster", 2)
    clock.advance(SLOT)
    assert computes(core, sweep_idle(core, "demo", clock.now())) == ["cpu-cluster"]


def test_the_snooze_is_audited(core: Core, clock: ManualClock) -> None:
    first = sweep_idle(core, "demo", clock.now())
    snooze_item(core, item_id(core, first, "cpu-cluster"), "carol", "1h")
    with core.store.transaction() as session:
        actions = session.scalars(select(AuditRow.action).where(AuditRow.actor == "carol"))
        assert "idle.snoozed" in list(actions)


def test_two_replicas_sweeping_the_same_slot_post_one_digest(
    core: Core, clock: ManualClock
) -> None:
    replicas = [core, replica_of(core)]
    clock.advance(HOUR)
    barrier = threading.Barrier(4)
    results: list[int | None] = []

    def sweep(on: Core) -> None:
        barrier.wait()
        results.append(sweep_idle(on, "demo", clock.now()))

    threads = [threading.Thread(target=sweep, args=(on,)) for on in replicas * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    replicas[1].store.engine.dispose()
    assert len([r for r in results if r is not None]) == 1
    assert len(notices(core, IDLE_DIGEST)) == 1


def test_the_idle_sweep_runs_when_its_interval_is_due(core: Core, clock: ManualClock) -> None:
    clock.advance(HOUR)
    assert run_due(core, core.service.workflow, clock.now()).digests  # first round: due at once
    clock.advance(timedelta(hours=5))
    assert run_due(core, core.service.workflow, clock.now()).digests
    assert not run_due(
        core, core.service.workflow, clock.now()
    ).digests  # same slot, already claimed


def test_a_lead_sets_the_minimum_to_zero_at_once(core: Core, clock: ManualClock) -> None:
    digest = sweep_idle(core, "demo", clock.now())
    reply = act_on_item(core, item_id(core, digest, "cpu-cluster"), "bob")
    assert reply.ok, reply.text
    cluster = core.backends("demo").list_computes().cluster("cpu-cluster")
    assert cluster is not None and cluster.min_nodes == 0
    with core.store.transaction() as session:
        item = session.scalars(
            select(IdleItemRow).where(IdleItemRow.compute == "cpu-cluster")
        ).one()
        assert item.handled_note == "minimum set to 0 by bob (#1)"
        audited = list(session.scalars(select(AuditRow.action).where(AuditRow.actor == "amlbot")))
    assert "compute.executed" in audited


def test_anyone_else_asks_a_lead_to_stop_an_instance(core: Core, clock: ManualClock) -> None:
    clock.advance(HOUR)
    digest = sweep_idle(core, "demo", clock.now())
    reply = act_on_item(core, item_id(core, digest, "alice-notebook"), "carol")
    assert reply.ok and "is waiting for a team lead of `demo` (bob)" in reply.text
    (instance,) = core.backends("demo").list_computes().instances
    assert instance.state == "Running"

    assert core.service.handle_text("bob", "approve 1").ok
    (instance,) = core.backends("demo").list_computes().instances
    assert instance.state == "Stopped"
    with core.store.transaction() as session:
        request = session.get(RequestRow, 1)
        assert request is not None and isinstance(request.payload, ComputePayload)
        assert request.payload.operation == "stop_instance"


def test_a_stranger_cannot_touch_another_workspaces_compute(core: Core, clock: ManualClock) -> None:
    digest = sweep_idle(core, "demo", clock.now())
    reply = act_on_item(core, item_id(core, digest, "cpu-cluster"), "mallory")
    assert not reply.ok and "not a member" in reply.text


def test_aml_idle_reports_on_demand_and_marks_snoozed_computes(
    core: Core, clock: ManualClock
) -> None:
    westeurope_prices(clock, age=timedelta(0))
    clock.advance(HOUR)
    digest = sweep_idle(core, "demo", clock.now())
    snooze_item(core, item_id(core, digest, "alice-notebook"), "alice", "1h")
    text = core.service.handle_text("alice", "idle").text
    assert text.startswith("*Idle compute in `demo`*")
    assert "`cpu-cluster`" in text and "`gpu-cluster`" not in text
    assert "_(snoozed until 2026-01-05 11:00 UTC by alice)_" in text
    assert "Prices: Retail Prices, fetched today, westeurope (estimates)." in text


def test_a_second_click_on_the_same_item_changes_nothing(core: Core, clock: ManualClock) -> None:
    digest = sweep_idle(core, "demo", clock.now())
    item = item_id(core, digest, "cpu-cluster")
    assert act_on_item(core, item, "carol").ok
    again = act_on_item(core, item, "carol")
    assert not again.ok and "already handled: asked by carol (#1)" in again.text
    with core.store.transaction() as session:
        assert len(session.scalars(select(RequestRow)).all()) == 1


def gpu_idle_seconds(core: Core) -> int | None:
    cluster = core.backends("demo").list_computes().cluster("gpu-cluster")
    assert cluster is not None
    return cluster.idle_seconds_before_scale_down


def test_a_lead_sets_a_long_idle_time_to_the_recommended_one_at_once(
    core: Core, clock: ManualClock
) -> None:
    core.backends("demo").set_cluster_idle_time("gpu-cluster", 3600)
    digest = sweep_idle(core, "demo", clock.now())

    reply = act_on_item(core, item_id(core, digest, "gpu-cluster"), "bob")

    assert reply.ok, reply.text
    recommended = core.config.workspaces[
        "demo"
    ].policy.idle.recommended_idle_seconds_before_scale_down
    assert gpu_idle_seconds(core) == recommended
    with core.store.transaction() as session:
        item = session.scalars(
            select(IdleItemRow).where(IdleItemRow.compute == "gpu-cluster")
        ).one()
        assert item.handled_note == "idle time set to 2m by bob (#1)"
        request = session.get(RequestRow, 1)
        audited = list(session.scalars(select(AuditRow.action).where(AuditRow.actor == "amlbot")))
    assert request is not None and isinstance(request.payload, ComputePayload)
    assert request.payload.operation == "set_idle_time"
    assert request.payload.idle_seconds == recommended
    assert "compute.executed" in audited


def test_anyone_else_asks_a_lead_to_set_the_idle_time(core: Core, clock: ManualClock) -> None:
    core.backends("demo").set_cluster_idle_time("gpu-cluster", 3600)
    digest = sweep_idle(core, "demo", clock.now())

    reply = act_on_item(core, item_id(core, digest, "gpu-cluster"), "carol")

    assert reply.ok and "set idle time of gpu-cluster to 2m" in reply.text
    assert "is waiting for a team lead of `demo` (bob)" in reply.text
    assert gpu_idle_seconds(core) == 3600
    with core.store.transaction() as session:
        request = session.get(RequestRow, 1)
        assert request is not None
        card = describe_request(request, core.config).as_text()
    assert (
        "Azure action: set the idle time before scale-down of cluster `gpu-cluster` to 2m" in card
    )
    assert core.service.handle_text("bob", "approve 1").ok
    assert gpu_idle_seconds(core) == 120


def test_the_idle_time_is_offered_once_the_minimum_is_zero(core: Core, clock: ManualClock) -> None:
    core.backends("demo").set_cluster_idle_time("cpu-cluster", 3600)
    first = sweep_idle(core, "demo", clock.now())
    assert act_on_item(core, item_id(core, first, "cpu-cluster"), "bob").ok
    cluster = core.backends("demo").list_computes().cluster("cpu-cluster")
    assert cluster is not None and (cluster.min_nodes, cluster.idle_seconds_before_scale_down) == (
        0,
        3600,
    )

    clock.advance(SLOT)
    second = sweep_idle(core, "demo", clock.now())
    assert act_on_item(core, item_id(core, second, "cpu-cluster"), "bob").ok

    cluster = core.backends("demo").list_computes().cluster("cpu-cluster")
    assert cluster is not None and cluster.idle_seconds_before_scale_down == 120


def test_the_console_shows_each_items_fix_button(core: Core, clock: ManualClock) -> None:
    core.backends("demo").set_cluster_idle_time("gpu-cluster", 3600)
    sweep_idle(core, "demo", clock.now())
    out = io.StringIO()

    Console(core, out).deliver()

    assert "[Buttons in Slack for gpu-cluster: Set idle time to 2 min / Snooze]" in out.getvalue()
    assert "[Buttons in Slack for cpu-cluster: Set minimum to 0 / Snooze]" in out.getvalue()


def test_a_lead_sets_an_instances_idle_shutdown_in_the_simulated_workspace(
    core: Core, clock: ManualClock
) -> None:
    clock.advance(HOUR)
    digest = sweep_idle(core, "demo", clock.now())
    reply = act_on_item(core, item_id(core, digest, "alice-notebook"), "bob", "idle_shutdown")
    assert reply.ok, reply.text
    # Unused for an hour, longer than its new idle shutdown: the simulation stops it, as
    # Azure would.
    (instance,) = core.backends("demo").list_computes().instances
    assert instance.idle_shutdown_minutes == 30 and instance.state == "Stopped"
    with core.store.transaction() as session:
        item = session.scalars(
            select(IdleItemRow).where(IdleItemRow.compute == "alice-notebook")
        ).one()
        assert item.handled_note == "idle shutdown set to 30 min by bob (#1)"
