"""Figures for notifications: the cost of a job-following sweep, of an idle sweep, and how
long an Event Grid delivery takes to reach the outbox worker's deliverer.

    python bench/notify_sweeps.py [--jobs 300] [--events 50]

Runs in-process on SQLite in a temporary folder, with the simulated workspace on a manual
clock. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from approvals.config import load_config  # noqa: E402
from approvals.following.jobs import follow_jobs  # noqa: E402
from approvals.idle.digest import sweep_idle  # noqa: E402
from approvals.idle.spend import idle_spend_between  # noqa: E402
from approvals.tables import OutboxRow  # noqa: E402
from bot.eventgrid_webhook import (  # noqa: E402
    EVENTGRID_HANDLER,
    eventgrid_routes,
    job_events_handler,
)
from bot.outbox_worker import OutboxWorker  # noqa: E402
from bot.wiring import Core, build_core  # noqa: E402
from bot.work import InboxWorker  # noqa: E402
from workspaces.clock import ManualClock  # noqa: E402
from workspaces.types import JobInfo, JobOutcome  # noqa: E402

ENV = "azureml:AzureML-sklearn-1.5@latest"
SECRET = "bench-secret"


class CountingBackend:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.outcomes = 0  # one per ended job, apart from the per-sweep calls

    def list_jobs(self, *, tag_filter: dict[str, str] | None = None) -> list[JobInfo]:
        self.calls += 1
        return list(self.inner.list_jobs(tag_filter=tag_filter))

    def get_job(self, name: str) -> JobInfo:
        self.calls += 1
        return JobInfo.model_validate(self.inner.get_job(name))

    def job_outcome(self, name: str) -> JobOutcome:
        self.outcomes += 1
        return JobOutcome.model_validate(self.inner.job_outcome(name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def make_core(folder: str) -> tuple[Core, ManualClock]:
    clock = ManualClock()
    core = build_core(load_config(None), database_url=f"sqlite:///{folder}/bench.db", clock=clock)
    core.backends("demo")
    return core, clock


def submit(core: Core, count: int) -> list[str]:
    names = []
    for index in range(count):
        person = ("alice", "bob", "carol")[index % 3]
        reply = core.service.handle_text(
            person,
            f'job submit --compute cpu-cluster --environment {ENV} --command "sleep {60 + index}"',
        )
        names.append(reply.text.split("`")[1])
    return names


def bench_follow(jobs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        core, clock = make_core(folder)
        counting = CountingBackend(core.backends("demo"))
        core.backends.install("demo", counting)
        submit(core, jobs)
        timings = []
        announced = 0
        for _ in range(12):
            clock.advance(timedelta(minutes=5))
            calls_before = counting.calls
            began = time.perf_counter()
            announced += follow_jobs(core, clock.now(), idle_spend=idle_spend_between)
            timings.append(time.perf_counter() - began)
            assert counting.calls - calls_before <= 1 + 10
        print(
            f"job sweep, {jobs} followed jobs: median {statistics.median(timings) * 1000:.1f} ms, "
            f"max {max(timings) * 1000:.1f} ms per sweep; workspace calls per sweep: "
            f"{counting.calls / len(timings):.1f}; status changes recorded: {announced}; "
            f"outcome look-ups: {counting.outcomes} (one per ended job)"
        )
        core.store.engine.dispose()


def bench_idle() -> None:
    with tempfile.TemporaryDirectory() as folder:
        core, clock = make_core(folder)
        timings = []
        for _ in range(20):
            clock.advance(timedelta(minutes=15))
            began = time.perf_counter()
            sweep_idle(core, "demo", clock.now())
            timings.append(time.perf_counter() - began)
        print(f"idle sweep, demo workspace: median {statistics.median(timings) * 1000:.1f} ms")
        core.store.engine.dispose()


class Recorder:
    """A deliverer that notes when each message reached it."""

    def __init__(self) -> None:
        self.delivered: dict[str, float] = {}

    def deliver(self, row: OutboxRow) -> None:
        text = str(row.payload.get("text", ""))
        self.delivered[text.split("`")[1] if "`" in text else text] = time.perf_counter()


def bench_eventgrid(events: int) -> None:
    import socket

    import uvicorn
    from starlette.applications import Starlette

    with tempfile.TemporaryDirectory() as folder:
        core, clock = make_core(folder)
        names = submit(core, events)
        clock.advance(timedelta(minutes=2))
        recorder = Recorder()
        worker = OutboxWorker(core.store, recorder, core.clock, core.config)
        wake = threading.Event()
        stopping = threading.Event()

        def outbox_loop() -> None:  # as `amlbot serve` runs it: poll every 1 s, or when woken
            while not stopping.is_set():
                worker.run_once()
                wake.wait(1.0)
                wake.clear()

        # As `amlbot serve` runs it: the webhook keeps the delivery in the inbox, a worker
        # handles it and wakes the outbox.
        inbox_worker = InboxWorker(
            core.store,
            core.clock,
            {EVENTGRID_HANDLER: job_events_handler(core, wake.set)},
            poll=0.025,
        )
        inbox_worker.start()
        app = Starlette(routes=eventgrid_routes(core, secret=SECRET, on_accepted=inbox_worker.wake))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
        threads = [
            threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True),
            threading.Thread(target=outbox_loop, daemon=True),
        ]
        for thread in threads:
            thread.start()
        while not server.started:
            time.sleep(0.01)
        worker.run_once()  # the submissions' own messages, out of the way
        topic = core.config.workspaces["demo"].azure.workspace_scope
        latencies = []
        for index, name in enumerate(names):
            event = {
                "id": f"bench-{index}",
                "topic": topic,
                "subject": f"experiments/x/runs/{name}",
                "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
                "eventTime": "2026-01-05T09:00:00Z",
                "data": {"runId": name, "runStatus": "Running"},
                "dataVersion": "2",
                "metadataVersion": "1",
            }
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/azure/events?code={SECRET}",
                data=json.dumps([event]).encode(),
                headers={"Content-Type": "application/json"},
            )
            sent = time.perf_counter()
            urllib.request.urlopen(request, timeout=10).read()
            deadline = sent + 5
            while name not in recorder.delivered and time.perf_counter() < deadline:
                time.sleep(0.001)
            latencies.append(recorder.delivered.get(name, float("inf")) - sent)
        stopping.set()
        wake.set()
        inbox_worker.stop(grace=1)
        server.should_exit = True
        for thread in threads:
            thread.join(timeout=10)
        latencies.sort()
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        print(
            f"Event Grid delivery -> deliverer, {events} events: median "
            f"{statistics.median(latencies) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )
        core.store.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    bench_follow(args.jobs)
    bench_idle()
    bench_eventgrid(args.events)


if __name__ == "__main__":
    main()
