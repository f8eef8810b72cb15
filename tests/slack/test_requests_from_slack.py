"""Requests that reach the HTTP endpoint unsigned, badly signed, tampered with or stale are
refused with 401 and do nothing; the health endpoint answers."""

from __future__ import annotations

import urllib.request

from sqlalchemy import func, select

from approvals.tables import InboxRow, RequestRow
from tests.fakes.slack_signing import post_signed, signed_headers, slash_command_body
from tests.slack.conftest import ALICE, CHANNEL, SIGNING_SECRET, STRANGER, SlackHarness

ACCESS = 'access request gpu-cluster --for 2h --reason "fine-tune BERT"'


def requests_made(harness: SlackHarness) -> int:
    with harness.core.store.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(RequestRow)) or 0)


def command_body(harness: SlackHarness) -> str:
    return slash_command_body(
        ACCESS, user_id=ALICE, response_url=harness.slack.response_url(CHANNEL, ALICE)
    )


def test_bad_signature_gets_401_and_nothing_is_done(harness: SlackHarness) -> None:
    response = harness.post(command_body(harness), bad_signature=True)
    assert response.status == 401
    harness.command(ALICE, "whoami")  # a good request afterwards is answered...
    harness.answer_to(ALICE, containing="You are *alice*")
    assert requests_made(harness) == 0  # ...and the bad one left no trace
    assert len(harness.slack.response_posts()) == 1


def inbox_items(harness: SlackHarness) -> int:
    with harness.core.store.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(InboxRow)) or 0)


def test_a_body_changed_after_signing_gets_401_and_is_not_kept(harness: SlackHarness) -> None:
    signed_body = command_body(harness)
    tampered = signed_body.replace("fine-tune", "fine-tune-and-more")
    headers = signed_headers(signed_body, SIGNING_SECRET)
    assert post_signed(harness.url, "/slack/events", tampered, headers).status == 401
    assert inbox_items(harness) == 0
    assert requests_made(harness) == 0


def test_the_signature_covers_the_bytes_not_the_fields_they_parse_to(
    harness: SlackHarness,
) -> None:
    """The edge parses a body once and hands Bolt the result; the signature is still checked
    over the raw body: the same fields encoded otherwise (`%2F` for `/`) are refused."""
    signed_body = command_body(harness)
    assert "command=%2Faml" in signed_body
    same_fields = signed_body.replace("command=%2Faml", "command=/aml")
    headers = signed_headers(signed_body, SIGNING_SECRET)
    assert post_signed(harness.url, "/slack/events", same_fields, headers).status == 401
    assert inbox_items(harness) == 0
    harness.command(ALICE, "whoami")  # while a signed one is answered
    harness.answer_to(ALICE, containing="You are *alice*")


def test_stale_timestamp_gets_401_and_nothing_is_done(harness: SlackHarness) -> None:
    response = harness.post(command_body(harness), stale=True)
    assert response.status == 401
    harness.command(ALICE, "whoami")
    harness.answer_to(ALICE, containing="You are *alice*")
    assert requests_made(harness) == 0


def test_unknown_slack_user_is_told_how_to_get_in(harness: SlackHarness) -> None:
    harness.command(STRANGER, ACCESS)
    assert "I don't know you yet" in harness.answer_to(STRANGER)
    assert requests_made(harness) == 0


def test_healthz_answers_ok(harness: SlackHarness) -> None:
    with urllib.request.urlopen(f"{harness.url}/healthz", timeout=5) as response:
        assert response.status == 200
        assert b'"status":"ok"' in response.read()
