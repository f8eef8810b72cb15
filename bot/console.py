"""The console front end: what each person would see in Slack, as plain text.

Reads `@NAME /aml ...` lines from standard input (so it can be scripted with a pipe);
a line without `@NAME` acts as the last person. Buttons are shown as the command that
presses them. State lives in the database, so one run can be continued by the next.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable
from typing import TextIO

from approvals import outbox
from approvals.drift import DRIFT_REPORT, FIX_LABELS, findings_of
from approvals.escalation import REQUEST_ESCALATED
from approvals.idle.detection import IdleFinding
from approvals.idle.digest import digest_items
from approvals.notice_kinds import GRANT_EXPIRING, IDLE_DIGEST, REQUEST_REMINDER
from approvals.scheduled import run_due
from approvals.states import RequestStatus
from approvals.sweep_tables import IdleItemRow
from approvals.tables import DriftStatus, OutboxRow
from approvals.wording import describe_request
from bot.outbox_worker import OutboxWorker
from bot.wiring import Core
from shared.secrets import find_secret

_ACTOR = re.compile(r"^@(?P<name>[\w.@-]+)\s*(?P<rest>.*)$")


class Console:
    def __init__(self, core: Core, out: TextIO) -> None:
        self.core = core
        self.out = out
        self.person: str | None = None

    def banner(self, database_url: str) -> None:
        people = ", ".join(sorted(p.name for p in self.core.config.all_people()))
        workspaces = ", ".join(
            f"{ws.name} ({ws.backend})" for ws in self.core.config.workspaces.values()
        )
        self._print(
            f"amlbot console. Workspaces: {workspaces}. People: {people}.\n"
            f"State: {database_url}\n"
            f"Type `@NAME /aml help` to act as someone; a line without @NAME acts as the "
            f"last person. Ctrl-D ends."
        )

    def run(self, lines: Iterable[str]) -> None:
        for raw in lines:
            self.handle_line(raw.rstrip("\n"))

    def handle_line(self, line: str) -> None:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            return
        match = _ACTOR.match(stripped)
        if match:
            name, text = match.group("name"), match.group("rest")
        else:
            name, text = self.person or "", stripped
        echo = text if find_secret(text) is None else "[text withheld: it contains a secret]"
        self._print(f"\n> @{name or '?'} {echo}")
        if not name:
            self._print("  [error] Say who you are first, e.g. `@alice /aml help`.")
            return
        if self.core.service.directory.by_name(name) is None:
            known = ", ".join(sorted(p.name for p in self.core.config.all_people()))
            self._print(f"  [error] Nobody called @{name} is configured. People: {known}.")
            return
        self.person = name
        # The console is its own scheduler: due sweeps (expiries, job updates, idle compute)
        # run before each command, and what they say is shown with the reply.
        run_due(self.core, self.core.service.workflow, self.core.clock.now())
        reply = self.core.service.handle_text(name, text, channel=None)
        where = "posted in the channel" if reply.public else f"only @{name} sees"
        self._print(_indent(f"[{where}] {reply.text}"))
        self.deliver()

    def deliver(self) -> None:
        """Show every queued message the way Slack would, through the same outbox worker."""
        self._skip_superseded_card_updates()
        OutboxWorker(self.core.store, _Printer(self), self.core.clock, self.core.config).run_once(
            1000
        )

    def _skip_superseded_card_updates(self) -> None:
        """A card is drawn from the request's current state, so of several queued updates
        of one card only the last shows anything new; a terminal prints each, so the
        earlier ones are marked delivered unseen (Slack would redraw the card in place)."""
        outbox.skip_superseded_card_updates(self.core.store, self.core.clock.now())

    def deliver_row(self, row: OutboxRow) -> None:
        text = self._render(row)
        if text is not None:
            self._print(_indent(text))

    def _render(self, row: OutboxRow) -> str | None:
        """What Slack would show for an outbox row; None where Slack shows nothing."""
        payload = row.payload
        if row.kind in {outbox.REQUEST_OPENED, outbox.REQUEST_UPDATED}:
            request = self.core.service.workflow.get(payload["request_id"])
            if request is None:
                return f"[card] request #{payload['request_id']} is gone"
            if row.kind == outbox.REQUEST_UPDATED and request.approvals_needed == 0:
                return None  # ran within policy at once: like in Slack, it has no card
            ws = self.core.config.workspaces[request.workspace]
            channel = f"#{ws.name} ({ws.channel})" if ws.channel else f"#{ws.name}"
            card = describe_request(request, self.core.config).as_text()
            verb = "approval card" if row.kind == outbox.REQUEST_OPENED else "card updated"
            text = f"[{channel}, {verb}]\n{_indent(card)}"
            if request.status == RequestStatus.PENDING:
                text += (
                    f"\n    [Approve: /aml approve {request.id}] "
                    f'[Deny: /aml deny {request.id} --reason "..."]'
                )
            return text
        if row.kind == outbox.PERSON_NOTICE:
            return f"[to @{payload['person']}] {payload['text']}"
        if row.kind == outbox.CHANNEL_NOTICE:
            return f"[#{payload['workspace']}] {payload['text']}"
        if row.kind == IDLE_DIGEST:
            digest_id = payload.get("digest_id")
            items = digest_items(self.core, int(digest_id)) if digest_id is not None else []
            buttons = [
                f"    [Buttons in Slack for {item.compute}: {' / '.join(_idle_item_buttons(item))}]"
                for item in items
            ]
            return "\n".join(
                [
                    f"[#{payload['workspace']}, idle compute]",
                    _indent(str(payload["text"])),
                    *buttons,
                ]
            )
        if row.kind == REQUEST_REMINDER:
            leads = ", ".join(f"@{lead}" for lead in payload.get("leads") or [])
            return f"[to {leads}] {payload['text']}"
        if row.kind == DRIFT_REPORT:
            findings = findings_of(self.core.store, [int(i) for i in payload["findings"]])
            buttons = [
                f"    [{FIX_LABELS[f.kind]}: /aml drift fix {f.id}]"
                for f in findings
                if f.status == DriftStatus.OPEN
            ]
            return "\n".join(
                [f"[#{payload['workspace']}, drift check]", _indent(str(payload["text"])), *buttons]
            )
        if row.kind == REQUEST_ESCALATED:
            approvers = ", ".join(f"@{name}" for name in payload.get("approvers") or [])
            request_id = payload["request_id"]
            return (
                f"[to {approvers}, a copy of card #{request_id}] {payload['text']}\n"
                f"    [Approve: /aml approve {request_id}] "
                f'[Deny: /aml deny {request_id} --reason "..."]'
            )
        if row.kind == GRANT_EXPIRING:
            return (
                f"[to @{payload['person']}] {payload['text']}\n"
                f'    [Extend: /aml access request {payload["cluster"]} --reason "extend"]'
            )
        return f"[{row.kind}] {payload.get('text', '')}"

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class _Printer:
    """Adapts the console to the outbox worker's `Deliverer`."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def deliver(self, row: OutboxRow) -> None:
        self.console.deliver_row(row)


def _idle_item_buttons(item: IdleItemRow) -> list[str]:
    fix = IdleFinding.from_json(item.finding).fix_label
    return [*([fix] if fix else []), "Snooze"]


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def run_console(core: Core, database_url: str, stream: TextIO | None = None) -> None:
    # Bytes that are not UTF-8 must not end the session: read them as lone surrogates,
    # which the parser refuses with a message, and echo them escaped.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    if stream is None and isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")
    console = Console(core, sys.stdout)
    source = stream or sys.stdin
    console.banner(database_url)
    console.deliver()
    if source.isatty():
        while True:
            try:
                line = input("amlbot> ")
            except EOFError:
                print()
                return
            console.handle_line(line)
    console.run(source)
