"""The idle sweep: one digest per workspace channel per sweep, and the `/aml idle` report.

Alert memory (`ComputeAlertRow`) keeps a compute out of the digest while it is snoozed, or
while it is unchanged and was alerted within the re-alert interval. The digest row is the
sweep's claim on its slot: a second replica inserting the same (workspace, slot) inserts
nothing and posts nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import outbox
from approvals.claims import insert_once
from approvals.config import WorkspaceConfig
from approvals.core import Basics, WithWorkspaces
from approvals.idle.detection import IdleFinding, find_idle, idle_without_known_start
from approvals.notice_kinds import IDLE_DIGEST
from approvals.store import Store
from approvals.sweep_tables import ComputeAlertRow, IdleDigestRow, IdleItemRow
from approvals.tables import JobRow
from approvals.wording import when
from approvals.workflow_base import BackendFor
from shared.errors import WorkspaceError
from shared.wording import counted
from workspaces.clock import Clock
from workspaces.prices import estimate, format_price

log = logging.getLogger(__name__)


def sweep_slot(now: datetime, interval: timedelta) -> int:
    """The sweep period `now` falls in; one digest per workspace per slot."""
    return int(now.timestamp() // max(interval.total_seconds(), 1))


def _states(session: Session, workspace: str) -> dict[str, ComputeAlertRow]:
    rows = session.scalars(select(ComputeAlertRow).where(ComputeAlertRow.workspace == workspace))
    return {row.compute: row for row in rows}


def alert_state(session: Session, workspace: str, compute: str) -> ComputeAlertRow:
    insert_once(
        session,
        ComputeAlertRow,
        {"workspace": workspace, "compute": compute},
    )
    row = session.scalars(
        select(ComputeAlertRow).where(
            ComputeAlertRow.workspace == workspace, ComputeAlertRow.compute == compute
        )
    ).one()
    return row


def is_quiet(
    state: ComputeAlertRow | None, finding: IdleFinding, now: datetime, realert: timedelta
) -> str | None:
    """Why `finding` stays out of the digest now (snoozed, recently alerted), or None."""
    if state is None:
        return None
    if state.snoozed_until is not None and state.snoozed_until > now:
        return f"snoozed until {when(state.snoozed_until)} by {state.snoozed_by}"
    if state.snoozed_fingerprint is not None and state.snoozed_fingerprint == finding.fingerprint:
        return f"snoozed until it changes, by {state.snoozed_by}"
    recently = state.alerted_at is not None and now - state.alerted_at < realert
    if recently and state.alerted_fingerprint == finding.fingerprint:
        return f"alerted {when(state.alerted_at)}"
    return None


# A followed job in one of these states holds its compute (as of the bot's last poll).
_ENDED = ("Completed", "Failed", "Canceled")


def jobs_on_computes(session: Session, workspace: str) -> dict[str, list[str]]:
    """Compute -> the jobs the bot follows there that have not ended, as last polled."""
    rows = session.execute(
        select(JobRow.compute, JobRow.name)
        .where(JobRow.workspace == workspace, JobRow.status.not_in(_ENDED))
        .order_by(JobRow.name)
    )
    found: dict[str, list[str]] = {}
    for compute, name in rows:
        if compute:
            found.setdefault(compute, []).append(name)
    return found


def sweep_idle(core: WithWorkspaces, workspace: str, now: datetime) -> int | None:
    """Look for idle compute in one workspace and queue its digest. Returns the digest id,
    or None when there is nothing new to say (or another replica has this slot)."""
    ws = core.config.workspaces[workspace]
    try:
        inventory = core.backends(workspace).list_computes()
    except WorkspaceError as exc:
        log.warning("listing compute in %s failed; the next sweep tries again: %s", workspace, exc)
        return None
    policy = ws.policy.idle
    unknown_start = idle_without_known_start(inventory)
    with core.store.transaction() as session:
        states = _states(session, workspace)
        for name in unknown_start:
            state = states.get(name) or alert_state(session, workspace, name)
            states[name] = state
            if state.idle_seen_since is None:
                state.idle_seen_since = now
        for name, state in states.items():
            if name not in unknown_start:
                state.idle_seen_since = None
        seen = {n: s.idle_seen_since for n, s in states.items() if s.idle_seen_since}
        findings = find_idle(
            inventory,
            policy,
            now,
            seen,
            region=ws.region,
            jobs_on=jobs_on_computes(session, workspace),
        )
        found = {finding.compute for finding in findings}
        for name, state in states.items():
            if name not in found:
                state.alerted_at = None  # busy or fixed in between: alert afresh next time
        due = [
            f
            for f in findings
            if is_quiet(states.get(f.compute), f, now, policy.realert_interval) is None
        ]
        if not due:
            return None
        slot = sweep_slot(now, policy.sweep_interval)
        claimed = insert_once(
            session,
            IdleDigestRow,
            {"workspace": workspace, "slot": slot, "created_at": now},
        )
        if not claimed:
            return None
        digest_id = session.scalars(
            select(IdleDigestRow.id).where(
                IdleDigestRow.workspace == workspace, IdleDigestRow.slot == slot
            )
        ).one()
        for finding in due:
            session.add(
                IdleItemRow(
                    digest_id=digest_id,
                    workspace=workspace,
                    compute=finding.compute,
                    fingerprint=finding.fingerprint,
                    finding=finding.as_json(),
                )
            )
            state = states.get(finding.compute) or alert_state(session, workspace, finding.compute)
            state.alerted_at = now
            state.alerted_fingerprint = finding.fingerprint
            state.snoozed_fingerprint = None  # it changed since "until changed"; that ended
        outbox.enqueue(
            session,
            IDLE_DIGEST,
            {"workspace": workspace, "digest_id": digest_id, "text": digest_text(ws, due)},
            now=now,
            dedupe_key=f"idle-digest:{workspace}:{slot}",
        )
        return int(digest_id)


def finding_line(finding: IdleFinding) -> str:
    what = "Compute instance" if finding.kind == "instance" else "Cluster"
    # After the reasons' full stop: a sentence of its own.
    cost = estimate(finding.hourly_cost, "hour")
    cost = cost[:1].upper() + cost[1:]
    if finding.cost_so_far is not None:
        cost += f", ~{format_price(finding.cost_so_far)} so far"
    return f"{what} `{finding.compute}` ({finding.vm_size}): {'; '.join(finding.reasons)}. {cost}"


def prices_note(findings: list[IdleFinding]) -> str:
    """Where the findings' prices came from and how old they were: "Prices: Retail Prices,
    2 days old, eastus (estimates)." """
    notes = sorted({f.price_note for f in findings if f.price_note})
    unknown = any(f.hourly_cost is None for f in findings)
    if not notes:
        return "Prices: unknown for these sizes in this region."
    return f"Prices: {'; '.join(notes)} (estimates{', some unknown' if unknown else ''})."


def hourly_total(findings: list[IdleFinding]) -> str:
    """What the findings cost together an hour, never passing unknown prices off as $0:
    "~$0.48/hour", "at least ~$0.21/hour" when some are unknown, or "an unknown cost per
    hour" when none is known."""
    known = [f.hourly_cost for f in findings if f.hourly_cost is not None]
    if not known:
        return "an unknown cost per hour"
    total = f"~{format_price(sum(known))}/hour"
    return f"at least {total}" if len(known) < len(findings) else total


def digest_text(ws: WorkspaceConfig, findings: list[IdleFinding]) -> str:
    lines = [
        f"Idle compute in `{ws.name}`: {counted(len(findings), 'item')}, {hourly_total(findings)}"
    ]
    lines += [f"• {finding_line(f)}" for f in findings]
    lines.append(prices_note(findings))
    return "\n".join(lines)


def idle_report(backends: BackendFor, store: Store, clock: Clock, ws: WorkspaceConfig) -> str:
    """`/aml idle`: every idle compute now, snoozed ones marked, without alerting anyone."""
    inventory = backends(ws.name).list_computes()
    now = clock.now()
    with store.transaction() as session:
        states = _states(session, ws.name)
        jobs_on = jobs_on_computes(session, ws.name)
    seen = {n: s.idle_seen_since for n, s in states.items() if s.idle_seen_since}
    findings = find_idle(inventory, ws.policy.idle, now, seen, region=ws.region, jobs_on=jobs_on)
    if not findings:
        return f"No idle compute in `{ws.name}` right now."
    lines = [f"*Idle compute in `{ws.name}`*"]
    for finding in findings:
        quiet = is_quiet(states.get(finding.compute), finding, now, timedelta(0))
        lines.append(f"• {finding_line(finding)}" + (f" _({quiet})_" if quiet else ""))
    lines.append(f"Together {hourly_total(findings)}. {prices_note(findings)}")
    return "\n".join(lines)


def digest_items(core: Basics, digest_id: int) -> list[IdleItemRow]:
    with core.store.transaction() as session:
        return list(
            session.scalars(
                select(IdleItemRow)
                .where(IdleItemRow.digest_id == digest_id)
                .order_by(IdleItemRow.id)
            )
        )


def digest_item(core: Basics, item_id: int) -> IdleItemRow | None:
    """One item of a digest (what a button names), or None if it is gone."""
    with core.store.transaction() as session:
        return session.get(IdleItemRow, item_id)
