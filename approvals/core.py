"""What the domain's scheduled work and idle actions use of the running bot.

The edge builds one object holding all of it (`bot.wiring.Core`); the domain names only
what it uses, so it imports nothing from the edge.
"""

from __future__ import annotations

from typing import Protocol

from approvals.config import AppConfig
from approvals.directory import Directory
from approvals.replies import Reply
from approvals.spend import IdleSpend
from approvals.store import Store
from approvals.workflow import Workflow
from approvals.workflow_base import BackendFor
from commands.models import AnyCommand
from workspaces.clock import Clock


class Service(Protocol):
    """The part of `approvals.service.AmlService` the scheduled work calls."""

    @property
    def workflow(self) -> Workflow: ...

    @property
    def directory(self) -> Directory: ...

    @property
    def idle_spend(self) -> IdleSpend | None: ...

    def run(self, person: str, command: AnyCommand, channel: str | None = None) -> Reply:
        """Run a command for a person; never raises (the service's error boundary)."""
        ...


class Core(Protocol):
    @property
    def config(self) -> AppConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def backends(self) -> BackendFor: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def service(self) -> Service: ...
