"""A delivery handled twice opens one request: the command, click or form whose worker died
before marking it done (or whose lease ran out) is handled again, finds the request its
first handling opened, and answers with it; no second card, job, datastore or grant.

Driven through the core as a worker drives it: inside `delivering(key, attempt)`. The kill
of a real server mid-command is in tests/e2e/test_kill_loop.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from approvals import leases, outbox
from approvals.config import AppConfig
from approvals.correlation import delivering
from approvals.payloads import RequestPayload
from approvals.replies import Reply
from approvals.scheduled import run_due
from approvals.states import RequestStatus
from approvals.tables import GrantRow, OutboxRow, RequestRow
from bot.wiring import Core
from tests.approvals.test_break_glass import EMERGENCY, with_break_glass
from tests.approvals.test_until_done import local
from workspaces.clock import ManualClock

ENV = "azureml:AzureML-sklearn-1.5@latest"
JOB = f'/aml job submit --compute gpu-cluster --environment {ENV} --command "python train.py"'
ACCESS = '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"'


def handled(core: Core, key: str, attempt: int, person: str, text: str) -> Reply:
    with delivering(key, attempt):
        return core.service.handle_text(person, text)


def count(core: Core, model: type[object], *where: object) -> int:
    with core.store.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def grant_alice(core: Core) -> None:
    asked = handled(core, "slash_command:grant", 1, "alice", ACCESS)
    assert asked.request_id is not None
    assert handled(core, "block_actions:grant", 1, "bob", f"/aml approve {asked.request_id}").ok


def test_a_request_waiting_for_a_lead_is_opened_once(core: Core) -> None:
    first = handled(core, "slash_command:T1", 1, "alice", ACCESS)
    again = handled(core, "slash_command:T1", 2, "alice", ACCESS)
    assert first.request_id is not None and again.request_id == first.request_id
    assert f"Request #{first.request_id}" in again.text and "is waiting for" in again.text
    assert count(core, RequestRow) == 1
    assert count(core, OutboxRow, OutboxRow.kind == outbox.REQUEST_OPENED) == 1


def test_an_action_run_at_once_is_carried_out_once(core: Core) -> None:
    grant_alice(core)
    first = handled(core, "slash_command:T2", 1, "alice", JOB)
    again = handled(core, "slash_command:T2", 2, "alice", JOB)
    assert first.ok and again.ok, (first.text, again.text)
    job = first.text.split("`")[1]
    assert f"Job `{job}` submitted" in again.text
    assert count(core, RequestRow, RequestRow.action == "job") == 1
    jobs = local(core).list_jobs(tag_filter={"amlbot-requester": "alice"})
    assert [j.name for j in jobs] == [job]


def payload_of(core: Core, request_id: int | None) -> RequestPayload:
    with core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        return row.payload


def test_two_handlings_at_the_same_moment_open_one_request(core: Core) -> None:
    """Two handlings of one delivery both open (as when a lease ran out under a live
    worker, past the service's check): the unique origin refuses the second insert, which
    then returns the request the first opened."""
    first = handled(core, "slash_command:T3", 1, "alice", ACCESS)
    with delivering("slash_command:T3", 1):
        ws = core.config.workspaces["demo"]
        row = core.service.workflow.open_request(
            ws, "alice", payload_of(core, first.request_id), "again", None, 1
        )
    assert row.id == first.request_id
    assert count(core, RequestRow) == 1


def test_the_same_words_in_another_delivery_open_another_request(core: Core) -> None:
    grant_alice(core)
    one = handled(core, "slash_command:T4", 1, "alice", JOB)
    two = handled(core, "slash_command:T5", 1, "alice", JOB)
    assert one.request_id != two.request_id
    assert count(core, RequestRow, RequestRow.action == "job") == 2


def test_break_glass_handled_again_grants_and_asks_for_review_once(
    make_core: Callable[[AppConfig, str], Core], demo_config: AppConfig, sqlite_url: str
) -> None:
    glass = make_core(with_break_glass(demo_config), sqlite_url)
    first = handled(glass, "slash_command:T6", 1, "alice", f"/aml {EMERGENCY}")
    again = handled(glass, "slash_command:T6", 2, "alice", f"/aml {EMERGENCY}")
    assert first.ok and again.ok, (first.text, again.text)
    assert again.request_id == first.request_id
    assert count(glass, RequestRow, RequestRow.action == "access") == 1
    assert count(glass, RequestRow, RequestRow.action == "review") == 1
    assert count(glass, GrantRow) == 1
    assert len(local(glass).role_assignments()) == 1


class ProcessDied(BaseException):
    """The process being killed: nothing in the bot catches it."""


def opened_then_died(core: Core, monkeypatch: pytest.MonkeyPatch, key: str) -> int:
    """A job command policy runs at once, whose process dies after the request was opened
    (approved, by policy) and before it was carried out: the reply was never sent."""

    def dies(request_id: int) -> RequestRow:
        raise ProcessDied

    with monkeypatch.context() as patched:
        patched.setattr(core.service.workflow, "execute", dies)
        with pytest.raises(ProcessDied):
            handled(core, key, 1, "alice", JOB)
    with core.store.transaction() as session:
        (row,) = session.scalars(select(RequestRow).where(RequestRow.action == "job"))
        assert row.status == RequestStatus.APPROVED and row.approvals_needed == 0
        return row.id


def outcome_notices(core: Core, request_id: int) -> list[str]:
    with core.store.transaction() as session:
        rows = session.scalars(select(OutboxRow).where(OutboxRow.kind == outbox.PERSON_NOTICE))
        return [
            row.payload["text"]
            for row in rows
            if row.payload["person"] == "alice" and row.payload.get("request_id") == request_id
        ]


def test_a_command_answered_again_while_its_request_is_in_flight_hears_the_outcome_once(
    core: Core, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handled again, the command answers "being carried out; alice hears the outcome": the
    sweep that then carries out the policy-run request must say it, though its first (and
    only) carry-out would otherwise count as one whose reply carried the outcome."""
    grant_alice(core)
    request_id = opened_then_died(core, monkeypatch, "slash_command:T6")

    again = handled(core, "slash_command:T6", 2, "alice", JOB)
    assert again.request_id == request_id and "is being carried out" in again.text
    assert "alice hears the outcome" in again.text

    clock.advance(leases.LEASE + timedelta(seconds=1))
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]
    (told,) = outcome_notices(core, request_id)
    assert "submitted" in told
    assert len(local(core).list_jobs(tag_filter={"amlbot-requester": "alice"})) == 1


def test_a_command_answered_again_after_its_request_ended_is_told_once_in_the_answer(
    core: Core, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant_alice(core)
    request_id = opened_then_died(core, monkeypatch, "slash_command:T7")
    clock.advance(leases.LEASE + timedelta(seconds=1))
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]

    again = handled(core, "slash_command:T7", 2, "alice", JOB)
    assert again.ok and "submitted" in again.text, again.text
    assert outcome_notices(core, request_id) == []  # the answer was the telling
