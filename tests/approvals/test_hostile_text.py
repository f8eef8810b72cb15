"""Text no person means to type (huge numbers, control characters) is refused with a
message on every database, never an internal error and never stored."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from approvals.tables import AuditRow, RequestRow
from bot.wiring import Core

ENV = "azureml:AzureML-sklearn-1.5@latest"


def rows(core: Core) -> tuple[int, int]:
    with core.store.transaction() as session:
        requests = session.scalar(select(func.count()).select_from(RequestRow)) or 0
        audits = session.scalar(select(func.count()).select_from(AuditRow)) or 0
    return requests, audits


@pytest.mark.parametrize(
    ("who", "text", "field"),
    [
        ("alice", "/aml access request gpu-cluster --for 99999999999w --reason 'fine'", "--for"),
        ("bob", "/aml audit --since 99999999999w", "--since"),
        ("bob", "/aml audit --since 999999999d", "--since"),
    ],
)
def test_a_huge_duration_is_refused_with_the_maximum(
    core: Core, who: str, text: str, field: str
) -> None:
    reply = core.service.handle_text(who, text)
    assert not reply.ok and reply.error_id is None
    assert field in reply.text and "at most 520w" in reply.text


@pytest.mark.parametrize(
    ("who", "text", "field"),
    [
        ("alice", "/aml access request gpu-cluster --reason 'fine\x00tune'", "--reason"),
        ("bob", "/aml deny 1 --reason 'no\x00budget'", "--reason"),
        (
            "bob",
            "/aml datastore register d1 --kind blob --account acct1 --container c01 "
            "--description 'lake\x00'",
            "--description",
        ),
        (
            "alice",
            f"/aml job submit --compute gpu-cluster --environment {ENV} --command 'p\x00'",
            "--command",
        ),
        ("alice", "/aml access request gpu-cluster --reason 'fine\udcfftune'", "--reason"),
    ],
)
def test_a_control_character_is_refused_naming_its_field_and_nothing_is_stored(
    core: Core, who: str, text: str, field: str
) -> None:
    core.service.handle_text("alice", "/aml access request gpu-cluster --reason 'fine-tune'")
    before = rows(core)
    reply = core.service.handle_text(who, text)
    assert not reply.ok and reply.error_id is None, reply.text
    assert field in reply.text and "that cannot be stored" in reply.text
    assert rows(core) == before


def test_a_job_named_by_a_huge_number_is_looked_up_by_name_and_not_found(core: Core) -> None:
    reply = core.service.handle_text("alice", "/aml job status " + "9" * 40)
    assert not reply.ok and reply.error_id is None, reply.text
    assert "not following a job" in reply.text
