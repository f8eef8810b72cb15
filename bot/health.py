"""Readiness: may this process be sent work? One answer for `/readyz` in every mode.

`/healthz` (alive) never asks the database: a database blip must not restart every replica
at once. `/readyz` does, and more: not shutting down, the database reachable and its schema
at this version's head or past it (behind it, the migrations have not run and writes
would fail; past it, a newer version is rolling out), the in-process worker claiming (or,
under `serve`, every `amlbot work` child running and ready),
the sweeps going round, and in Socket Mode the websocket to Slack open. The database part
is cached for a few seconds, so a probe every second costs one query every
`CACHE_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from approvals.store import Store, alembic_config
from bot.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
# Sweep rounds come every 15 s; a scheduler silent for this long is wedged.
SWEEP_STALE_SECONDS = 300.0


@dataclass
class Verdict:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)  # check -> "ok" or why not

    def body(self) -> dict[str, str]:
        return {"status": "ok" if self.ready else "not ready", **self.checks}

    def json(self) -> str:
        return json.dumps(self.body())


class SchemaCheck:
    """The database answers and its migrations are at this code's head; cached."""

    def __init__(self, store: Store, cache_seconds: float = CACHE_SECONDS) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._script = ScriptDirectory.from_config(alembic_config(store.engine))
        self._heads = set(self._script.get_heads())
        self._known = {revision.revision for revision in self._script.walk_revisions()}
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._result: tuple[str, str] = ("unknown", "unknown")

    def __call__(self) -> tuple[str, str]:
        """(database, migrations): "ok" each, or why not."""
        with self._lock:
            if time.monotonic() - self._checked_at < self.cache_seconds:
                return self._result
            self._result = self._check()
            self._checked_at = time.monotonic()
            return self._result

    def _check(self) -> tuple[str, str]:
        try:
            with self.store.engine.connect() as connection:
                current = set(MigrationContext.configure(connection).get_current_heads())
        except Exception as exc:
            return type(exc).__name__, "unknown"
        if current == self._heads or not current <= self._known:
            # At this version's head, or past it: a revision this version does not know
            # is a newer version's, migrated during a rolling deploy (migrations only add,
            # so the old pods keep working and must stay in service meanwhile).
            return "ok", "ok"
        found = ", ".join(sorted(current)) or "none"
        return "ok", f"at {found}, this version needs {', '.join(sorted(self._heads))}"


@dataclass
class Readiness:
    """What `/readyz` checks; each hook is optional (a process without a worker has none)."""

    schema: SchemaCheck
    draining: Callable[[], bool] = lambda: False
    # None from a hook: not checked (e.g. a web pod has no in-process worker).
    worker_ready: Callable[[], bool | None] = lambda: None
    # Seconds since the last sweep round finished; None without sweeps in this process.
    sweep_age: Callable[[], float | None] = lambda: None
    slack_connected: Callable[[], bool | None] = lambda: None
    # `serve`'s `amlbot work` children: "ok" or why not; None without children.
    work_processes: Callable[[], str | None] = lambda: None
    sweep_stale_seconds: float = SWEEP_STALE_SECONDS

    def __call__(self) -> Verdict:
        if self.draining():
            return Verdict(False, {"status": "draining"})
        checks: dict[str, str] = {}
        checks["database"], checks["migrations"] = self.schema()
        worker = self.worker_ready()
        if worker is not None:
            checks["worker"] = "ok" if worker else "not claiming"
        age = self.sweep_age()
        if age is not None:
            stale = age > self.sweep_stale_seconds
            checks["sweeps"] = f"last round {age:.0f}s ago" if stale else "ok"
        connected = self.slack_connected()
        if connected is not None:
            checks["slack"] = "ok" if connected else "not connected"
        children = self.work_processes()
        if children is not None:
            checks["work_processes"] = children
        return Verdict(all(value == "ok" for value in checks.values()), checks)


def serve_health(
    port: int,
    ready: Callable[[], Verdict],
    metrics: Metrics | None = None,
    host: str = "0.0.0.0",
) -> ThreadingHTTPServer:
    """`GET /healthz` (the process answers), `/readyz` (`ready()`) and `/metrics`, on a
    thread: for the processes without an HTTP app (Socket Mode, `amlbot work`)."""

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            content_type, body = "text/plain", b"ok\n"
            if self.path == "/healthz":
                status = 200
            elif self.path == "/readyz":
                verdict = ready()
                status = 200 if verdict.ready else 503
                content_type, body = "application/json", verdict.json().encode()
            elif self.path == "/metrics" and metrics is not None:
                try:
                    status, body = 200, metrics.exposition()
                    content_type = CONTENT_TYPE_LATEST
                except Exception:
                    log.exception("collecting metrics failed")
                    status, body = 500, b"collecting metrics failed\n"
            else:
                status, body = 404, b"not found\n"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the log

    server = ThreadingHTTPServer((host, port), Probe)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="amlbot-health", daemon=True).start()
    return server
