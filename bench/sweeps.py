"""Figures for the sweeps against the fake ARM (tests/fakes/azure_arm.py) with Azure-like
latency: the idle sweep over 1, 10 and 50 workspaces of 200 computes each (50 per page), and
job following with 1,000 running jobs across 10 workspaces and 1,000 in one workspace.

    python bench/sweeps.py [--latency 0.045] [--workspaces 1 10 50] [--computes 200]
                           [--jobs 1000] [--throttled 5]

The bot builds its own clients, as in production: `DefaultAzureCredential` gets its tokens
from the fake's managed-identity endpoint, so "tokens fetched" counts real token requests.
Runs in-process on SQLite in a temporary folder; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from approvals.config import DEMO_CONFIG_PATH, AppConfig  # noqa: E402
from approvals.following.jobs import follow_jobs  # noqa: E402
from approvals.idle.spend import idle_spend_between  # noqa: E402
from approvals.scheduled import SweepReport, WorkspaceStep, run_due, run_workspace_steps  # noqa: E402
from approvals.tables import JobRow, OutboxRow, RequestRow, RequestStatus  # noqa: E402
from bot.wiring import Core, build_core  # noqa: E402
from tests.fakes.azure_arm import FakeAzure  # noqa: E402
from tests.fakes.azure_arm_auth import MSI_PATH  # noqa: E402
from workspaces.clock import ManualClock  # noqa: E402
from workspaces.types import AzureCoordinates  # noqa: E402

SUBSCRIPTION = "00000000-0000-4000-8000-000000000000"
BOT_TAGS = {"amlbot": "true", "amlbot-requester": "alice"}


def call_kind(method: str, path: str, query: dict[str, str]) -> str:
    if path == MSI_PATH:
        return "token"
    if re.search(r"/computes$", path):
        return "compute list page" if "$skipToken" in query else "compute list"
    if re.search(r"/jobs$", path):
        return "job list page" if "$skipToken" in query or "$skiptoken" in query else "job list"
    if re.search(r"/jobs/[^/]+$", path):
        return "job get"
    if "/mlflow/" in path:
        return "metrics"
    if "/history/" in path or path == "/discovery":
        return "run history"
    if path.startswith("/blobs"):
        return "log blob"
    if re.search(r"/workspaces/[^/]+$", path):
        return "workspace get"
    return f"{method} {path}"


def calls_by_kind(fake: FakeAzure, since: int = 0) -> Counter[str]:
    with fake.lock:
        calls = fake.calls[since:]
    return Counter(call_kind(c.method, c.path, c.query) for c in calls)


class FakeInChild:
    """The fake ARM in a process of its own (forked), so that its work (TLS, JSON, the
    latency sleeps) does not take the bot's GIL, as Azure's does not. `setup(fake)` runs in
    the child before it serves; `do(name, ...)` calls a method of the fake there."""

    def __init__(self, setup: Callable[[FakeAzure], None], latency: float) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_child, args=(child, setup, latency))
        self._process.start()
        self.cloud, self.identity_env = self._conn.recv()

    def do(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((name, args, kwargs))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"the fake failed: {value}")
        return value

    def calls(self, since: int = 0) -> Counter[str]:
        return Counter(self.do("_bench_calls", since))

    def call_count(self) -> int:
        return int(self.do("_bench_call_count"))

    def close(self) -> None:
        self._conn.send(None)
        self._process.join(timeout=10)


def _serve_child(conn: Any, setup: Callable[[FakeAzure], None], latency: float) -> None:
    with FakeAzure(page_size=50) as fake:
        setup(fake)
        fake.latency = latency
        conn.send((fake.cloud_config().model_dump(), fake.managed_identity_env()))
        while (message := conn.recv()) is not None:
            name, args, kwargs = message
            try:
                if name == "_bench_calls":
                    value: Any = dict(calls_by_kind(fake, *args))
                elif name == "_bench_call_count":
                    value = len(fake.calls)
                else:
                    value = getattr(fake, name)(*args, **kwargs)
                conn.send((True, value))
            except Exception as exc:
                conn.send((False, repr(exc)))


@contextmanager
def fake_arm(setup: Callable[[FakeAzure], None], latency: float) -> Iterator[FakeInChild]:
    """The fake in its own process, and the environment under which DefaultAzureCredential
    signs in at it (its managed-identity endpoint; its CA)."""
    fake = FakeInChild(setup, latency)
    saved = {k: os.environ.get(k) for k in fake.identity_env}
    os.environ.update(fake.identity_env)
    try:
        yield fake
    finally:
        fake.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def coordinates(name: str) -> AzureCoordinates:
    return AzureCoordinates(
        subscription_id=SUBSCRIPTION, resource_group="rg-bench", workspace_name=f"mlw-{name}"
    )


def config_for(cloud: dict[str, Any], names: list[str]) -> AppConfig:
    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8"))
    demo = raw["workspaces"].pop("demo")
    raw["defaults"]["policy"]["drift"]["enabled"] = False  # measured apart from the sweeps
    for name in names:
        ws = yaml.safe_load(yaml.safe_dump(demo))
        ws["backend"] = "azure"
        ws["azure"] = coordinates(name).model_dump()
        raw["workspaces"][name] = ws
    raw["cloud"] = cloud
    return AppConfig.model_validate(raw)


def add_computes(fake: FakeAzure, names: list[str], computes: int) -> None:
    """`computes` per workspace: three quarters clusters, a quarter instances; a few of each
    with something to report (a minimum above 0, no idle shutdown)."""
    instances = computes // 4
    for name in names:
        coords = coordinates(name)
        fake.add_workspace(coords.subscription_id, coords.resource_group, coords.workspace_name)
        for n in range(computes - instances):
            fake.add_cluster(coords, f"c{n:03d}", vm_size="Standard_DS3_v2", min_nodes=int(n < 3))
        for n in range(instances):
            shutdown = None if n < 3 else "PT30M"
            fake.add_instance(coords, f"i{n:03d}", idle_before_shutdown=shutdown)


@dataclass
class IdleFigures:
    workspaces: int
    seconds: float
    calls: Counter[str]
    digests: int
    failed: int


def bench_idle(
    workspaces: int, computes: int, latency: float, throttled: int = 0, folder: str = ""
) -> IdleFigures:
    """One idle sweep round (`run_due`) over `workspaces` workspaces, timed."""
    names = [f"ws{n:02d}" for n in range(workspaces)]

    def setup(fake: FakeAzure) -> None:
        add_computes(fake, names, computes)
        for name in names[:throttled]:
            # Azure throttles these workspaces' reads once, asking for 2 s.
            fake.fail("GET", f"/workspaces/mlw-{name}/computes$", 429, retry_after=2)

    with fake_arm(setup, latency) as fake:
        config = config_for(fake.cloud, names)
        clock = ManualClock()
        core = build_core(
            config, database_url=f"sqlite:///{folder}/idle-{workspaces}-{throttled}.db", clock=clock
        )
        started = time.perf_counter()
        report = run_due(core, core.service.workflow, clock.now())
        seconds = time.perf_counter() - started
        figures = IdleFigures(
            workspaces, seconds, fake.calls(), len(report.digests), len(report.failed)
        )
        core.store.engine.dispose()
        return figures


@dataclass
class JobFigures:
    label: str
    polls: list[tuple[str, float, Counter[str], int]]  # (what, seconds, calls, announced)
    running_told: int
    completed_told: int
    jobs: int
    completed: int


def follow_in_db(core: Core, workspace: str, names: list[str]) -> None:
    now = core.clock.now()
    with core.store.transaction() as session:
        for name in names:
            request = RequestRow(
                workspace=workspace,
                action="job.submit",
                requester="alice",
                payload={},
                summary=f"job {name}",
                status=RequestStatus.SUCCEEDED,
                created_at=now,
            )
            session.add(request)
            session.flush()
            session.add(
                JobRow(
                    workspace=workspace,
                    name=name,
                    request_id=request.id,
                    requester="alice",
                    compute="gpu",
                    status="Queued",
                    submitted_at=now,
                    updated_at=now,
                )
            )


def told(core: Core) -> list[str]:
    with core.store.transaction() as session:
        return [str(t) for t in session.scalars(select(OutboxRow.payload["text"]))]


def bench_jobs(workspaces: int, jobs: int, latency: float, folder: str) -> JobFigures:
    """Three polls: all running; 5% completed; nothing new."""
    names = [f"jw{n:02d}" for n in range(workspaces)]
    per_workspace = jobs // workspaces
    by_ws = {name: [f"amlbot-{name}-{n:04d}" for n in range(per_workspace)] for name in names}
    ended = [job for name in names for job in by_ws[name][: max(1, per_workspace // 20)]]

    def setup(fake: FakeAzure) -> None:
        for name in names:
            coords = coordinates(name)
            fake.add_workspace(coords.subscription_id, coords.resource_group, coords.workspace_name)
            fake.add_cluster(coords, "gpu", max_nodes=4, current_nodes=4)
            for job in by_ws[name]:
                fake.add_job(coords, job, status="Running", tags=BOT_TAGS)

    with fake_arm(setup, latency) as fake:
        config = config_for(fake.cloud, names)
        clock = ManualClock()
        core = build_core(
            config, database_url=f"sqlite:///{folder}/jobs-{workspaces}.db", clock=clock
        )
        for name in names:
            follow_in_db(core, name, by_ws[name])
            core.backends(name).clients.ml()  # type: ignore[attr-defined]  # the SDK's import

        def poll(what: str) -> tuple[str, float, Counter[str], int]:
            mark = fake.call_count()
            report = SweepReport()

            def follow(name: str) -> None:
                changes = follow_jobs(core, clock.now(), [name], idle_spend=idle_spend_between)
                with report.lock:
                    report.job_changes += changes

            steps = [
                WorkspaceStep(f"jobs:{name}", SUBSCRIPTION, lambda name=name: follow(name))
                for name in names
            ]
            started = time.perf_counter()
            run_workspace_steps(report, steps)
            return what, time.perf_counter() - started, fake.calls(mark), report.job_changes

        polls = [poll("all running")]
        for name in names:
            for job in by_ws[name][: max(1, per_workspace // 20)]:
                fake.do(
                    "end_job", coordinates(name), job, "Completed", ran_for=timedelta(minutes=5)
                )
        polls.append(poll("5% ended"))
        polls.append(poll("nothing new"))
        texts = told(core)
        all_jobs = [job for name in names for job in by_ws[name]]
        running = sum(
            1
            for job in all_jobs
            if sum(t.startswith(f"Job `{job}` is running") for t in texts) == 1
        )
        completed = sum(
            1 for job in ended if sum(t.startswith(f"Job `{job}` completed") for t in texts) == 1
        )
        core.store.engine.dispose()
        label = f"{jobs} jobs in {workspaces} workspace(s)"
        return JobFigures(label, polls, running, completed, len(all_jobs), len(ended))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.045)
    parser.add_argument("--workspaces", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--computes", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument(
        "--throttled",
        type=int,
        default=5,
        help="workspaces answered 429 once in an extra 50-workspace round",
    )
    parser.add_argument("--skip-jobs", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="amlbot-bench-") as folder:
        print(
            f"fake ARM latency {args.latency * 1000:.0f} ms per call, 50 items per page, "
            f"{args.computes} computes per workspace"
        )
        print("\nIdle sweep (one run_due round)")
        header = ("workspaces", "wall s", "lists", "pages", "tokens", "other", "digests", "failed")
        print(" ".join(f"{h:>10}" if i == 0 else f"{h:>7}" for i, h in enumerate(header)))
        rounds = [(n, 0) for n in args.workspaces]
        if args.throttled:
            rounds.append((max(args.workspaces), args.throttled))
        for workspaces, throttled in rounds:
            f = bench_idle(workspaces, args.computes, args.latency, throttled, folder)
            other = sum(
                v
                for k, v in f.calls.items()
                if k not in {"compute list", "compute list page", "token"}
            )
            label = f"{workspaces}" + (f" ({throttled}x429)" if throttled else "")
            row = (
                f.calls["compute list"],
                f.calls["compute list page"],
                f.calls["token"],
                other,
                f.digests,
                f.failed,
            )
            print(f"{label:>10} {f.seconds:7.2f} " + " ".join(f"{v:7d}" for v in row))
        if args.skip_jobs:
            return
        print("\nJob following (polls through the sweep pool)")
        for workspaces in (10, 1):
            figures = bench_jobs(workspaces, args.jobs, args.latency, folder)
            print(f"{figures.label}:")
            for what, seconds, calls, announced in figures.polls:
                shown = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
                print(
                    f"  {what:<12} {seconds:6.2f} s, {sum(calls.values())} calls ({shown}), "
                    f"{announced} announced"
                )
            print(
                f"  told 'is running' exactly once: {figures.running_told}/{figures.jobs}; "
                f"'completed' exactly once: {figures.completed_told}/{figures.completed}"
            )


if __name__ == "__main__":
    main()
