"""Extending a PIM grant through the bot, with `backend: azure` against the fake over TLS:
Azure's end moves with the bot's record, and a retry extends nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from approvals.config import DEMO_CONFIG_PATH, AppConfig
from approvals.states import RequestStatus
from approvals.tables import GrantRow, RequestRow
from bot.wiring import Core
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure import make_azure_workspace
from workspaces.azure.rbac import extension_request_name
from workspaces.clock import ManualClock
from workspaces.port import WorkspaceBackend
from workspaces.types import GrantReceipt, RoleGrantSpec

ACCESS = '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'
ALICE = "11111111-1111-4111-8111-111111111111"  # alice's object_id in the demo config
WARNED = timedelta(hours=2) - timedelta(minutes=10)  # inside the 15-minute expiry warning


@pytest.fixture
def pim_core(
    fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str, clock: ManualClock
) -> Core:
    fake.now = clock.now  # PIM ends assignments on the test's clock
    return azure_core(fake, make_core(demo_on_azure(fake, mode="pim"), sqlite_url))


def demo_on_azure(fake: FakeAzure, *, mode: str) -> AppConfig:
    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["workspaces"]["demo"]["backend"] = "azure"
    raw["defaults"]["policy"]["access"]["mode"] = mode
    raw["cloud"] = fake.cloud_config().model_dump()
    return AppConfig.model_validate(raw)


def azure_core(fake: FakeAzure, core: Core) -> Core:
    """`core`, its workspace and people in the fake, acting through the Azure backend."""
    ws = core.config.workspaces["demo"]
    coords = ws.azure
    fake.add_workspace(coords.subscription_id, coords.resource_group, coords.workspace_name)
    fake.add_cluster(coords, "gpu-cluster", max_nodes=2, priority="LowPriority")
    fake.add_principal(ALICE)
    core.backends.install(
        "demo",
        make_azure_workspace(
            ws.azure_settings(), core.config.cloud, FakeCredential(), **fake.backend_options()
        ),
    )
    return core


def granted(core: Core) -> GrantRow:
    assert core.service.handle_text("alice", ACCESS).ok
    approved = core.service.handle_text("bob", "/aml approve 1")
    assert approved.ok, approved.text
    with core.store.transaction() as session:
        return session.scalars(select(GrantRow)).one()


def ask_to_extend(core: Core) -> int:
    reply = core.service.handle_text("alice", ACCESS)
    assert reply.ok and reply.request_id is not None, reply.text
    return reply.request_id


def azure_end(fake: FakeAzure) -> datetime:
    [assignment] = fake.assignments()
    return datetime.fromisoformat(assignment["properties"]["endDateTime"])


def request_types(fake: FakeAzure) -> list[str]:
    puts = fake.calls_to("PUT", "roleAssignmentScheduleRequests/")
    return [put.body["properties"]["requestType"] for put in puts]


def test_an_extended_pim_grant_is_one_assignment_ending_at_the_new_expiry(
    pim_core: Core, fake: FakeAzure, clock: ManualClock
) -> None:
    grant = granted(pim_core)
    clock.advance(WARNED)
    extension = ask_to_extend(pim_core)

    approved = pim_core.service.handle_text("bob", f"/aml approve {extension}")

    assert approved.ok, approved.text
    new_end = grant.expires_at + timedelta(hours=2)
    assert request_types(fake) == ["AdminAssign", "AdminExtend"]
    assert azure_end(fake) == new_end
    extend = fake.calls_to("PUT", "roleAssignmentScheduleRequests/")[-1]
    assert extend.path.endswith("/" + extension_request_name(grant.assignment_name, new_end))
    with pim_core.store.transaction() as session:
        [record] = session.scalars(select(GrantRow))
    assert (record.id, record.expires_at) == (grant.id, new_end)


class Crash(BaseException):
    """The process dying: no handler of the bot's catches it."""


class DiesAfterExtending:
    """The Azure backend, in a process that dies once Azure has accepted the extension."""

    def __init__(self, inner: WorkspaceBackend) -> None:
        self.inner = inner

    def extend_cluster_access(self, grant: RoleGrantSpec, new_expiry: datetime) -> GrantReceipt:
        self.inner.extend_cluster_access(grant, new_expiry)
        raise Crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_extension_retried_after_a_crash_reuses_its_request_and_extends_once(
    pim_core: Core, fake: FakeAzure, clock: ManualClock
) -> None:
    grant = granted(pim_core)
    clock.advance(WARNED)
    extension = ask_to_extend(pim_core)
    azure = pim_core.backends("demo")
    pim_core.backends.install("demo", DiesAfterExtending(azure))  # type: ignore[arg-type]
    with pytest.raises(Crash):
        pim_core.service.handle_text("bob", f"/aml approve {extension}")
    pim_core.backends.install("demo", azure)  # the process that picks the request up

    clock.advance(timedelta(minutes=1))
    assert pim_core.service.workflow.resume_stalled() == [extension]

    new_end = grant.expires_at + timedelta(hours=2)
    first, retried = fake.calls_to("PUT", "roleAssignmentScheduleRequests/")[1:]
    assert first.path == retried.path
    extensions = [
        r
        for r in fake.schedule_requests.values()
        if r["properties"]["requestType"] == "AdminExtend"
    ]
    assert len(extensions) == 1 and len(fake.assignments()) == 1
    assert azure_end(fake) == new_end
    with pim_core.store.transaction() as session:
        request = session.get(RequestRow, extension)
        assert request is not None and request.status == RequestStatus.SUCCEEDED
        assert session.scalars(select(GrantRow.expires_at)).one() == new_end


def test_an_rbac_grant_is_extended_without_a_call_to_azure(
    fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str, clock: ManualClock
) -> None:
    core = azure_core(fake, make_core(demo_on_azure(fake, mode="rbac"), sqlite_url))
    grant = granted(core)
    clock.advance(WARNED)
    extension = ask_to_extend(core)
    calls_before = len(fake.calls)

    approved = core.service.handle_text("bob", f"/aml approve {extension}")

    assert approved.ok, approved.text
    assert len(fake.calls) == calls_before
    with core.store.transaction() as session:
        assert session.scalars(select(GrantRow.expires_at)).one() == (
            grant.expires_at + timedelta(hours=2)
        )
