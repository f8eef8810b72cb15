"""Build the core from settings and configuration: store, workspaces, service."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from approvals.config import AppConfig, load_config
from approvals.prices import load_cached_prices
from approvals.service import AmlService
from approvals.store import Store
from bot.metrics import Metrics
from workspaces.clock import Clock, SystemClock
from workspaces.port import WorkspaceBackend


class Backends:
    """One backend per workspace, made on first use (the Azure SDK is slow to import)."""

    def __init__(
        self,
        config: AppConfig,
        store: Store,
        clock: Clock,
        simulated_latency: float = 0.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.simulated_latency = simulated_latency
        self.store = store
        self.clock = clock
        self._made: dict[str, WorkspaceBackend] = {}
        self._lock = threading.Lock()

    def __call__(self, workspace: str) -> WorkspaceBackend:
        with self._lock:
            backend = self._made.get(workspace)
            if backend is None:
                backend = self._make(workspace)
                self._made[workspace] = backend
            return backend

    def _make(self, workspace: str) -> WorkspaceBackend:
        ws = self.config.workspaces[workspace]
        if ws.backend == "azure":
            from workspaces.azure import make_azure_workspace

            on_call = self.metrics.count_azure_call if self.metrics is not None else None
            return make_azure_workspace(
                ws.azure_settings(), self.config.cloud, on_azure_call=on_call
            )
        from workspaces.local import LocalWorkspace

        return LocalWorkspace(
            self.store.engine,
            ws.name,
            [c.spec() for c in ws.clusters],
            [i.spec() for i in ws.instances],
            self.clock,
            environments=ws.environments,
            latency=self.simulated_latency,
            coordinates=ws.azure,
        )

    def install(self, workspace: str, backend: WorkspaceBackend) -> None:
        """Use a given backend for a workspace (tests, a custom deployment)."""
        with self._lock:
            self._made[workspace] = backend


@dataclass
class Core:
    config: AppConfig
    store: Store
    backends: Backends
    clock: Clock
    service: AmlService
    # This process's instruments (`/metrics`); one registry per core.
    metrics: Metrics = field(default_factory=Metrics)


def build_core(
    config: AppConfig | None = None,
    *,
    database_url: str,
    config_path: str | None = None,
    clock: Clock | None = None,
    simulated_latency: float = 0.0,
) -> Core:
    config = config or load_config(config_path)
    clock = clock or SystemClock()
    store = Store.open(database_url)
    metrics = Metrics()
    backends = Backends(config, store, clock, simulated_latency, metrics)
    service = AmlService(config, store, backends, clock)
    core = Core(
        config=config,
        store=store,
        backends=backends,
        clock=clock,
        service=service,
        metrics=metrics,
    )
    load_cached_prices(core)  # what any replica fetched from the Retail Prices API
    core.metrics.watch_store(store, clock)
    return core
