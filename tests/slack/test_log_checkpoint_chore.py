"""A worker on SQLite checkpoints the write-ahead log every few seconds
(`approvals.store.checkpoint_log`): the inbox's writer engines leave it to others, and a
stream of commands that change nothing (`help`) has no handler commit to do it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from approvals.store import make_writer_engine
from bot.scheduler import NotificationScheduler
from bot.services import background_services, slack_registrars
from bot.slack.app import build_slack
from bot.wiring import Core
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import http_settings


def test_a_worker_on_sqlite_checkpoints_the_log(sqlite_core: Core, fake_slack: FakeSlack) -> None:
    bot = build_slack(sqlite_core, http_settings(fake_slack), extra_registrars=slack_registrars())
    try:
        services = background_services(sqlite_core, bot)
        (sweeps,) = [s for s in services if isinstance(s, NotificationScheduler)]
        (chore,) = [c for c in sweeps.housekeeping if c.name == "checkpoint-log"]
        assert chore.every <= timedelta(seconds=30)

        url = sqlite_core.store.engine.url.render_as_string(hide_password=False)
        writer = make_writer_engine(url)
        with writer.begin() as connection:
            connection.execute(text("CREATE TABLE chore_probe (n INTEGER)"))
            connection.execute(text("INSERT INTO chore_probe VALUES (1)"))
        writer.dispose()

        result = chore.work()
        assert isinstance(result, tuple)
        pages, copied = result
        assert pages > 0
        assert copied == pages
    finally:
        bot.edge.close()
