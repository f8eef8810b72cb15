"""The console shows access that ends with the work and break-glass as Slack would: the
card, its redraw saying how the access ended, the warning with its Extend button, the
leads' notices and the review card."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

from approvals.config import AppConfig
from approvals.config_access import BreakGlassPolicy
from bot.console import Console
from bot.wiring import Core
from workspaces.clock import ManualClock

ENV = "azureml:AzureML-sklearn-1.5@latest"


def console_of(core: Core) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(core, out), out


def test_an_until_done_grant_ends_with_the_work_in_the_console(
    sqlite_core: Core, clock: ManualClock
) -> None:
    console, out = console_of(sqlite_core)
    console.handle_line(
        '@alice /aml access request gpu-cluster --until-done --for 8h --reason "fine-tune"'
    )
    console.handle_line("@bob /aml approve 1")
    console.handle_line(
        f'@alice /aml job submit --compute gpu-cluster --environment {ENV} --command "sleep 600"'
    )
    for _ in range(45):
        clock.advance(timedelta(minutes=1))
        console.handle_line("@alice /aml access list")
    text = out.getvalue()
    assert "Duration: until the work is done: ends 30m after" in text
    assert "alice has access to `gpu-cluster` until the work there is done" in text
    assert "[to @alice] Your access to `gpu-cluster` in `demo` (grant #1) was revoked: your " in (
        text
    )
    assert "Access: ended with the work" in text


def test_the_warning_before_the_time_limit_shows_its_extend_button(
    sqlite_core: Core, clock: ManualClock
) -> None:
    console, out = console_of(sqlite_core)
    console.handle_line(
        '@alice /aml access request gpu-cluster --until-done --for 1h --reason "fine-tune"'
    )
    console.handle_line("@bob /aml approve 1")
    console.handle_line(
        f'@alice /aml job submit --compute gpu-cluster --environment {ENV} --command "sleep 9000"'
    )
    for _ in range(47):
        clock.advance(timedelta(minutes=1))
        console.handle_line("@alice /aml access list")
    text = out.getvalue()
    assert "reaches its time limit" in text
    assert "[Extend: /aml access request gpu-cluster" in text


def test_break_glass_in_the_console(
    make_core: Callable[[AppConfig, str], Core], demo_config: AppConfig, sqlite_url: str
) -> None:
    ws = demo_config.workspaces["demo"]
    policy = ws.policy.model_copy(update={"break_glass": BreakGlassPolicy(allowed=True)})
    config = demo_config.model_copy(
        update={"workspaces": {"demo": ws.model_copy(update={"policy": policy})}}
    )
    console, out = console_of(make_core(config, sqlite_url))
    console.handle_line(
        '@alice /aml access request gpu-cluster --emergency --reason "prod model is down"'
    )
    console.handle_line("@bob /aml approve 2")
    text = out.getvalue()
    assert "Break-glass: Request #1 done" in text
    assert "[to @bob] :rotating_light: alice used break-glass access to `gpu-cluster`" in text
    assert "*#2 Review break-glass access to gpu-cluster*" in text
    assert "[Approve: /aml approve 2]" in text
    assert "bob found the break-glass use #1 by alice justified" in text


def test_escalation_in_the_console(
    make_core: Callable[[AppConfig, str], Core],
    demo_config: AppConfig,
    sqlite_url: str,
    clock: ManualClock,
) -> None:
    from approvals.config_access import EscalationPolicy

    ws = demo_config.workspaces["demo"]
    escalation = EscalationPolicy(escalate_after=timedelta(hours=1), fallback_approvers=["carol"])
    policy = ws.policy.model_copy(update={"escalation": escalation})
    config = demo_config.model_copy(
        update={"workspaces": {"demo": ws.model_copy(update={"policy": policy})}}
    )
    console, out = console_of(make_core(config, sqlite_url))
    console.handle_line('@alice /aml access request gpu-cluster --reason "fine-tune BERT"')
    clock.advance(timedelta(hours=1))
    console.handle_line("@carol /aml approve 1")
    text = out.getvalue()
    assert "[to @carol, a copy of card #1] Escalated to you: request #1" in text
    assert "Escalated: escalated" in text and "carol may decide it too" in text
    assert "Approved #1." in text


def test_drift_in_the_console(sqlite_core: Core) -> None:
    from datetime import UTC, datetime

    from workspaces.local import LocalWorkspace
    from workspaces.types import RoleGrantSpec

    backend = sqlite_core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    backend.set_cluster_min_nodes("gpu-cluster", 2)
    backend.grant_cluster_access(
        RoleGrantSpec(
            assignment_name="9f0e1d2c-3b4a-4596-8877-665544332211",
            principal_object_id="33333333-3333-4333-8333-333333333333",
            role_name="AzureML Data Scientist",
            compute="gpu-cluster",
            scope="compute",
            description="made in the portal",
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        )
    )
    console, out = console_of(sqlite_core)
    console.handle_line("@bob /aml drift check")
    console.handle_line("@bob /aml drift fix 1")
    text = out.getvalue()
    assert "[#demo, drift check]" in text
    assert "[Revoke it: /aml drift fix 1]" in text
    assert "[Set minimum back: /aml drift fix 2]" in text
    assert "Read back from Azure: the assignment is gone." in text
