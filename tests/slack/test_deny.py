"""Deny: the button opens a modal for the reason; submitting it denies, the card is
updated, and the requester receives the reason."""

from __future__ import annotations

import json

from sqlalchemy import select

from approvals.tables import AuditRow, RequestRow
from bot.slack.views.common import DENY_ACTION, DENY_MODAL
from tests.slack.conftest import ALICE, BOB, CAROL, CHANNEL, SlackHarness, wait_for

DATASTORE = "datastore register trainingdata --kind blob --account contosodata --container training"


def reason_values(text: str) -> dict[str, dict[str, dict[str, str]]]:
    return {"reason": {"reason": {"type": "plain_text_input", "value": text}}}


def ask_for_datastore(harness: SlackHarness) -> int:
    harness.command(ALICE, DATASTORE)
    return harness.request_id(harness.answer_to(ALICE, containing="is waiting for a team lead"))


def open_deny_modal(harness: SlackHarness, request_id: int) -> dict:
    harness.click(BOB, DENY_ACTION, request_id)
    return harness.modal(DENY_MODAL)


def test_deny_button_opens_a_modal_asking_why(harness: SlackHarness) -> None:
    request_id = ask_for_datastore(harness)
    modal = open_deny_modal(harness, request_id)
    assert modal["title"]["text"] == f"Deny #{request_id}"
    assert [b["block_id"] for b in modal["blocks"] if b["type"] == "input"] == ["reason"]
    assert json.loads(modal["private_metadata"])["request_id"] == request_id


def test_submitted_reason_denies_and_reaches_the_requester(harness: SlackHarness) -> None:
    request_id = ask_for_datastore(harness)
    card = harness.card(request_id)
    modal = open_deny_modal(harness, request_id)
    response = harness.submit(
        BOB, DENY_MODAL, reason_values("use the shared lake instead"), modal["private_metadata"]
    )
    assert (response.status, response.body) == (200, "")
    assert f"Denied #{request_id}" in harness.answer_to(BOB, containing="Denied")
    harness.dm_to(ALICE, "use the shared lake instead")
    updated = wait_for(
        lambda: (m := harness.slack.message(CHANNEL, card.ts)).edits and m, what="card update"
    )
    assert "denied by bob: use the shared lake instead" in updated.all_text
    assert not [b for b in updated.blocks if b["type"] == "actions"]


def test_too_short_reason_comes_back_as_a_field_error(harness: SlackHarness) -> None:
    request_id = ask_for_datastore(harness)
    modal = open_deny_modal(harness, request_id)
    response = harness.submit(BOB, DENY_MODAL, reason_values("no"), modal["private_metadata"])
    assert response.status == 200
    assert response.json()["response_action"] == "errors"
    assert "reason" in response.json()["errors"]
    with harness.core.store.transaction() as session:
        assert session.get(RequestRow, request_id).status == "pending"


def test_non_lead_gets_no_modal_but_a_refusal(harness: SlackHarness) -> None:
    request_id = ask_for_datastore(harness)
    harness.click(CAROL, DENY_ACTION, request_id)
    assert "Only team leads" in harness.answer_to(CAROL, containing="Only team leads")
    assert not [v for v in harness.slack.views() if v.view.get("callback_id") == DENY_MODAL]


def test_a_key_typed_as_the_reason_is_refused_and_reaches_no_one(harness: SlackHarness) -> None:
    key = "Zm9vYmFy" * 10 + "Zm9vYm" + "=="  # the shape of a storage account key
    request_id = ask_for_datastore(harness)
    modal = open_deny_modal(harness, request_id)
    response = harness.submit(
        BOB, DENY_MODAL, reason_values(f"leaked {key}"), modal["private_metadata"]
    )
    assert list(response.json()["errors"]) == ["reason"] and key not in response.body
    answer = harness.answer_to(BOB, containing="a storage account key")
    assert key not in answer
    with harness.core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None and row.status == "pending" and row.deny_reason is None
        refused = session.scalars(select(AuditRow).where(AuditRow.action == "command.refused"))
        assert [r.detail for r in refused] == [{"detail_kind": "a storage account key"}]
        assert key not in repr([vars(r) for r in session.scalars(select(AuditRow))])
    assert not [c for c in harness.slack.calls() if key in json.dumps(c.params)]


def test_a_reason_with_a_control_character_comes_back_as_a_field_error(
    harness: SlackHarness,
) -> None:
    request_id = ask_for_datastore(harness)
    modal = open_deny_modal(harness, request_id)
    response = harness.submit(
        BOB, DENY_MODAL, reason_values("no\x00budget left"), modal["private_metadata"]
    )
    assert response.json()["response_action"] == "errors"
    assert "control character" in response.json()["errors"]["reason"]
    with harness.core.store.transaction() as session:
        assert session.get(RequestRow, request_id).status == "pending"
