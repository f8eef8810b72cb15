"""What the domain's scheduled work and idle actions use of the running bot.

The edge builds one object holding all of it (`bot.wiring.Core`); the domain names only
what it uses, so it imports nothing from the edge, and each job's signature says what it
reaches:

    Basics           configuration, store, clock: the cost digest, prices, the App Home
                     overview, reminders
    WithWorkspaces   the same and the workspaces: job following, the idle digest, a round
                     of sweeps
    Sweeps           the workflow's sweeps over grants and requests (`Workflow` has them)
    Core             all of it and the service: the idle digest's buttons run commands
"""

from __future__ import annotations

from typing import Protocol

from approvals.config import AppConfig
from approvals.replies import Reply
from approvals.store import Store
from approvals.until_done import WorkRound
from approvals.workflow import Workflow
from approvals.workflow_base import BackendFor
from commands.models import AnyCommand
from workspaces.clock import Clock


class Basics(Protocol):
    @property
    def config(self) -> AppConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Clock: ...


class WithWorkspaces(Basics, Protocol):
    @property
    def backends(self) -> BackendFor: ...


class Sweeps(Protocol):
    """Revocation, expiry, resumption and the end of work-bound grants: each claims its
    rows in the database, so every replica may run them every round."""

    def revoke_expired_grants(self) -> list[int]: ...

    def expire_pending_requests(self) -> list[int]: ...

    def resume_stalled(self) -> list[int]: ...

    def end_grants_whose_work_ended(self, workspace: str) -> WorkRound: ...


class Service(Protocol):
    """The part of `approvals.service.AmlService` the idle digest's buttons call."""

    @property
    def workflow(self) -> Workflow: ...

    def run(self, person: str, command: AnyCommand, channel: str | None = None) -> Reply:
        """Run a command for a person; never raises (the service's error boundary)."""
        ...


class Core(WithWorkspaces, Protocol):
    @property
    def service(self) -> Service: ...
