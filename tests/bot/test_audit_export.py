"""`amlbot audit export` writes the whole trail out, oldest first, as JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bot.cli import main
from bot.wiring import Core


def make_history(core: Core) -> None:
    reply = core.service.handle_text("alice", "/aml access request gpu-cluster --reason 'bert'")
    core.service.handle_text("bob", f"/aml approve {reply.request_id}")


def test_jsonl_export_lists_every_event_in_order(
    sqlite_core: Core,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_history(sqlite_core)
    monkeypatch.setenv("AMLBOT_DATABASE_URL", sqlite_url)
    assert main(["audit", "export", "--format", "jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["action"] for e in events] == [
        "access.requested",
        "access.approved",
        "access.executed",
    ]
    assert events[0]["actor"] == "alice" and events[0]["workspace"] == "demo"


def test_csv_export_to_a_file(
    sqlite_core: Core, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    make_history(sqlite_core)
    monkeypatch.setenv("AMLBOT_DATABASE_URL", sqlite_url)
    target = tmp_path / "audit.csv"
    assert main(["audit", "export", "--format", "csv", "--output", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["outcome"] for r in rows] == ["pending", "approved", "succeeded"]


def test_bad_since_is_explained(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMLBOT_DATABASE_URL", sqlite_url)
    assert main(["audit", "export", "--since", "yesterday"]) == 1
    assert "90m, 4h, 2d" in capsys.readouterr().err
