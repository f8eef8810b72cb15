"""What the idle digest's buttons do: stop an instance or set its idle shutdown, set a
cluster's minimum to 0 or shorten its idle time before scale-down (a lead at once, anyone
else through an approval request), or snooze the alert.

Buttons carry only an `IdleItemRow` id; workspace, compute and fingerprint come from the
database. Every function returns a `Reply` for the person who clicked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from sqlalchemy import update

from approvals import audit
from approvals.config import AppConfig
from approvals.core import Core
from approvals.idle.detection import IdleFinding
from approvals.idle.digest import alert_state
from approvals.payloads import ComputeOperation, ComputePayload
from approvals.policy import decide_compute_action
from approvals.replies import Reply
from approvals.states import RequestStatus
from approvals.sweep_tables import IdleItemRow
from approvals.wording import short_ref, when
from approvals.workflow import Workflow
from commands import models as m
from commands.durations import format_duration
from shared.errors import AmlbotError, NotFoundUserError, PermissionRefusedError, UserError

# Which of an item's buttons was clicked: its main fix, or an instance's idle shutdown.
FixChoice = Literal["fix", "idle_shutdown"]
SnoozeChoice = Literal["1h", "1d", "changed"]
SNOOZE_FOR: dict[str, timedelta] = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
SNOOZE_WORDS = {"1h": "for 1 hour", "1d": "for 1 day", "changed": "until it changes"}


def request_compute_change(
    workflow: Workflow, config: AppConfig, person: str, command: m.ComputeChange
) -> Reply:
    """Stop an instance, or set a cluster's minimum nodes or idle time before scale-down
    (`idle_seconds`, required for "set_idle_time"), as policy allows: a team lead's
    change runs at once (through the workspace port, audited by the workflow); anyone
    else's becomes an approval request for the workspace's leads. `AmlService.run` calls
    this for `ComputeChange`; the buttons go through the service."""
    workspace = command.workspace or ""
    operation, compute = command.operation, command.compute
    min_nodes, idle_seconds = command.min_nodes, command.idle_seconds
    idle_shutdown_minutes = command.idle_shutdown_minutes
    ws = config.workspaces.get(workspace)
    if ws is None or person not in ws.members:
        return Reply(text=f"You are not a member of workspace `{workspace}`.", ok=False)
    if operation == "stop_instance":
        title = f"Stop compute instance {compute}"
        description = f"stop compute instance `{compute}` (it can be started again)"
    elif operation == "set_min_nodes":
        title = f"Set minimum nodes of {compute} to {min_nodes}"
        description = f"set the minimum node count of cluster `{compute}` to {min_nodes}"
    elif operation == "set_idle_shutdown":
        if idle_shutdown_minutes is None or not 15 <= idle_shutdown_minutes <= 4320:
            return Reply(text="Idle shutdown takes 15 to 4320 minutes (3 days), e.g. 30.", ok=False)
        title = f"Set idle shutdown of {compute} to {idle_shutdown_minutes} min"
        description = (
            f"set the idle shutdown of compute instance `{compute}` to {idle_shutdown_minutes} "
            "min: Azure stops it after that long without use"
        )
    else:
        if idle_seconds is None or idle_seconds < 0:
            return Reply(text="An idle time of 0 seconds or more is needed.", ok=False)
        words = format_duration(timedelta(seconds=idle_seconds))
        title = f"Set idle time of {compute} to {words}"
        description = (
            f"set the idle time before scale-down of cluster `{compute}` to {words} "
            f"({idle_seconds} s): idle nodes are released after that long"
        )
    # Each operation keeps only the value it sets; the handler asks for that one.
    payload = ComputePayload(
        operation=operation,
        compute=compute,
        min_nodes=min_nodes if operation == "set_min_nodes" else None,
        idle_seconds=idle_seconds if operation == "set_idle_time" else None,
        idle_shutdown_minutes=(idle_shutdown_minutes if operation == "set_idle_shutdown" else None),
        title=title,
        description=description,
    )
    try:
        decision = decide_compute_action(ws, person)
        if decision.run_now:
            row = workflow.run_now(ws, person, payload, title.lower(), decision.why)
            ok = row.status == RequestStatus.SUCCEEDED
            return Reply(text=workflow.outcome_text(row), ok=ok, request_id=row.id)
        row = workflow.open_request(
            ws,
            person,
            payload,
            title.lower(),
            "asked from the idle-compute alert",
            decision.approvals_needed,
        )
    except AmlbotError as exc:
        return Reply(text=exc.render(), ok=False)
    leads = ", ".join(lead for lead in ws.team_leads if lead != person)
    return Reply(
        text=(
            f"Request {short_ref(row.id)} ({title.lower()}) is waiting for a team lead of "
            f"`{ws.name}` ({leads}). Withdraw it with `/aml request cancel {row.id}`."
        ),
        request_id=row.id,
    )


def _load_item(core: Core, item_id: int, person: str) -> IdleItemRow:
    with core.store.transaction() as session:
        item = session.get(IdleItemRow, item_id)
    if item is None:
        raise NotFoundUserError("That idle alert is no longer known to amlbot.")
    if person not in core.config.workspaces[item.workspace].members:
        raise PermissionRefusedError(f"You are not a member of workspace `{item.workspace}`.")
    return item


def _mark_handled(core: Core, item_id: int, person: str, note: str) -> None:
    with core.store.transaction() as session:
        session.execute(
            update(IdleItemRow)
            .where(IdleItemRow.id == item_id)
            .values(handled_by=person, handled_note=note[:255], handled_at=core.clock.now())
        )


def _claim_item(core: Core, item_id: int, person: str) -> bool:
    """Only the first Stop / Set-minimum click on an item acts (a double click, or two
    people at once, must not make two changes or two requests)."""
    with core.store.transaction() as session:
        claimed = session.execute(
            update(IdleItemRow)
            .where(IdleItemRow.id == item_id, IdleItemRow.handled_by.is_(None))
            .values(handled_by=person, handled_note="being handled", handled_at=core.clock.now())
            .execution_options(synchronize_session=False)
        )
        return getattr(claimed, "rowcount", 0) == 1


def act_on_item(core: Core, item_id: int, person: str, choice: FixChoice = "fix") -> Reply:
    """The item's fix: Stop instance, Set minimum to 0, or Set idle time; or, with
    `choice="idle_shutdown"`, an instance's Set idle shutdown."""
    try:
        item = _load_item(core, item_id, person)
    except UserError as exc:
        return Reply(text=exc.render(), ok=False)
    finding = IdleFinding.from_json(item.finding)
    operation: ComputeOperation | None = (
        _fix_for(finding)
        if choice == "fix"
        else "set_idle_shutdown"
        if finding.can_set_idle_shutdown
        else None
    )
    if operation is None:
        return Reply(text=f"`{item.compute}` has nothing the bot can fix.", ok=False)
    if not _claim_item(core, item_id, person):
        with core.store.transaction() as session:
            handled = session.get(IdleItemRow, item_id)
        note = handled.handled_note if handled is not None else None
        return Reply(text=f"`{item.compute}` is already handled: {note}.", ok=False)
    reply = core.service.run(
        person,
        m.ComputeChange(
            workspace=item.workspace,
            operation=operation,
            compute=item.compute,
            min_nodes=0,
            idle_seconds=finding.idle_seconds_fix,
            idle_shutdown_minutes=finding.idle_shutdown_fix,
        ),
    )
    if not reply.ok or reply.request_id is None:
        with core.store.transaction() as session:  # nothing changed: let someone try again
            session.execute(
                update(IdleItemRow)
                .where(IdleItemRow.id == item_id)
                .values(handled_by=None, handled_note=None, handled_at=None)
            )
        return reply
    with core.store.transaction() as session:
        row = core.service.workflow.load(session, reply.request_id)
    if operation == "set_idle_time":
        done = (
            f"idle time set to {format_duration(timedelta(seconds=finding.idle_seconds_fix or 0))}"
        )
    elif operation == "set_idle_shutdown":
        done = f"idle shutdown set to {finding.idle_shutdown_fix} min"
    else:
        done = "stopped" if operation == "stop_instance" else "minimum set to 0"
    asked = row.status == RequestStatus.PENDING
    _mark_handled(
        core, item_id, person, f"{'asked' if asked else done} by {person} ({short_ref(row.id)})"
    )
    return reply


def _fix_for(finding: IdleFinding) -> ComputeOperation | None:
    # The same order as the button's label (`IdleFinding.fix_label`).
    if finding.can_stop:
        return "stop_instance"
    if finding.can_set_min_zero:
        return "set_min_nodes"
    if finding.can_set_idle_time:
        return "set_idle_time"
    return None


def snooze_item(core: Core, item_id: int, person: str, choice: SnoozeChoice) -> Reply:
    """Keep this compute out of the digests for a while, or until its fingerprint changes."""
    try:
        item = _load_item(core, item_id, person)
    except UserError as exc:
        return Reply(text=exc.render(), ok=False)
    now = core.clock.now()
    until = now + SNOOZE_FOR[choice] if choice in SNOOZE_FOR else None
    with core.store.transaction() as session:
        state = alert_state(session, item.workspace, item.compute)
        state.snoozed_until = until
        state.snoozed_fingerprint = item.fingerprint if until is None else None
        state.snoozed_by = person
        audit.record(
            session,
            at=now,
            actor=person,
            action="idle.snoozed",
            outcome="snoozed",
            workspace=item.workspace,
            target=item.compute,
            until=until.isoformat() if until else "changed",
        )
    words = f"until {when(until)}" if until else SNOOZE_WORDS[choice]
    _mark_handled(core, item_id, person, f"snoozed {words} by {person}")
    return Reply(text=f"Idle alerts for `{item.compute}` are snoozed {words}.")
