"""`/readyz`: send work here? Each check named in the answer; `/healthz` never asks the
database."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import text

from approvals.store import Store, alembic_config, make_engine
from bot.health import Readiness, SchemaCheck
from bot.scheduler import NotificationScheduler
from bot.wiring import Core
from tests.slack.conftest import SlackHarness


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_the_http_app_is_ready_when_every_check_passes_and_not_while_draining(
    harness: SlackHarness,
) -> None:
    assert get(f"{harness.url}/readyz") == (
        200,
        {"status": "ok", "database": "ok", "migrations": "ok", "worker": "ok"},
    )
    harness.bot.edge.draining = True  # what SIGTERM does first
    assert get(f"{harness.url}/readyz") == (503, {"status": "draining"})
    assert get(f"{harness.url}/healthz") == (200, {"status": "ok"})


def set_revision(core: Core, revision: str) -> str:
    """Stamp the database as at `revision`; the revision it was at."""
    with core.store.engine.begin() as connection:
        was = str(connection.scalar(text("SELECT version_num FROM alembic_version")))
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    return was


def head_and_previous(core: Core) -> tuple[str, str]:
    script = ScriptDirectory.from_config(alembic_config(core.store.engine))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    return head, previous


def test_a_schema_behind_this_versions_head_is_not_ready(core: Core) -> None:
    ready = Readiness(SchemaCheck(core.store, cache_seconds=0))
    assert ready().checks == {"database": "ok", "migrations": "ok"}
    head, previous = head_and_previous(core)
    set_revision(core, previous)  # as if this version started without its migration
    verdict = ready()
    assert not verdict.ready
    assert verdict.checks["migrations"] == f"at {previous}, this version needs {head}"


def test_a_schema_a_newer_version_migrated_stays_ready_during_its_rollout(core: Core) -> None:
    set_revision(core, "f00d")  # a revision this version does not know
    assert Readiness(SchemaCheck(core.store, cache_seconds=0))().ready


def test_the_schema_check_is_cached_so_frequent_probes_cost_one_query(core: Core) -> None:
    ready = Readiness(SchemaCheck(core.store, cache_seconds=60))
    assert ready().ready
    set_revision(core, head_and_previous(core)[1])
    assert ready().ready  # the answer of a moment ago
    assert not Readiness(SchemaCheck(core.store, cache_seconds=0))().ready


def test_an_unreachable_database_is_not_ready() -> None:
    store = Store(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none"))
    verdict = Readiness(SchemaCheck(store))()
    assert not verdict.ready
    assert verdict.checks == {"database": "OperationalError", "migrations": "unknown"}


def test_sweeps_that_stopped_going_round_are_not_ready(core: Core) -> None:
    sweeps = NotificationScheduler(core, tick=timedelta(hours=1))
    sweeps.start()  # the start-up sweep counts as a round
    try:
        age = sweeps.seconds_since_round
        assert Readiness(SchemaCheck(core.store), sweep_age=age)().checks["sweeps"] == "ok"
        wedged = Readiness(SchemaCheck(core.store), sweep_age=age, sweep_stale_seconds=0)()
        assert not wedged.ready and wedged.checks["sweeps"].startswith("last round")
    finally:
        sweeps.stop()
