"""`/readyz`: send work here? Each check named in the answer; `/healthz` never asks the
database."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from approvals.store import Store, make_engine
from bot.health import Readiness, SchemaCheck
from bot.notify.runtime import NotificationScheduler
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


def test_a_schema_other_than_this_versions_head_is_not_ready(core: Core) -> None:
    ready = Readiness(SchemaCheck(core.store, cache_seconds=0))
    assert ready().checks == {"database": "ok", "migrations": "ok"}
    with core.store.engine.begin() as connection:
        head = connection.scalar(text("SELECT version_num FROM alembic_version"))
        # As after a rollback onto a database a newer version has migrated.
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    verdict = ready()
    assert not verdict.ready
    assert verdict.checks["migrations"] == f"at f00d, this version needs {head}"


def test_the_schema_check_is_cached_so_frequent_probes_cost_one_query(core: Core) -> None:
    ready = Readiness(SchemaCheck(core.store, cache_seconds=60))
    assert ready().ready
    with core.store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    assert ready().ready  # the answer of a moment ago


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
