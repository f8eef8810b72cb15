"""A grant whose process died after Azure made the role assignment, resumed by the sweep
through the real SDKs against the fake Azure: one assignment, one grant row, same end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from approvals import leases
from approvals.scheduled import run_due
from approvals.states import RequestStatus
from approvals.tables import GrantRow, RequestRow
from bot.wiring import Core
from tests.azure.test_grant_extension import ACCESS, azure_core, demo_on_azure
from tests.fakes.azure_arm import FakeAzure
from workspaces.clock import ManualClock
from workspaces.port import WorkspaceBackend
from workspaces.types import GrantReceipt, RoleGrantSpec


class Crash(BaseException):
    """The process dying: no handler of the bot's catches it."""


class DiesAfterGranting:
    def __init__(self, inner: WorkspaceBackend) -> None:
        self.inner = inner

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt:
        self.inner.grant_cluster_access(grant)
        raise Crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("mode", ["rbac", "pim"])
def test_a_grant_azure_made_before_the_process_died_is_resumed_into_one_recorded_grant(
    fake: FakeAzure,
    make_core: Callable[..., Core],
    sqlite_url: str,
    clock: ManualClock,
    mode: str,
) -> None:
    fake.now = clock.now
    core = azure_core(fake, make_core(demo_on_azure(fake, mode=mode), sqlite_url))
    request_id = core.service.handle_text("alice", ACCESS).request_id
    azure = core.backends("demo")
    core.backends.install("demo", DiesAfterGranting(azure))  # type: ignore[arg-type]
    with pytest.raises(Crash):
        core.service.handle_text("bob", f"/aml approve {request_id}")
    core.backends.install("demo", azure)  # the process that picks the request up
    assert len(fake.assignments()) == 1

    clock.advance(leases.LEASE * 2)
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]

    [assignment] = fake.assignments()
    with core.store.transaction() as session:
        [grant] = session.scalars(select(GrantRow))
        request = session.get(RequestRow, request_id)
    assert request is not None and request.status == RequestStatus.SUCCEEDED
    assert assignment["name"] == grant.assignment_name
    if mode == "pim":  # Azure ends it: the retry asked for the end the first attempt chose
        assert datetime.fromisoformat(assignment["properties"]["endDateTime"]) == grant.expires_at
