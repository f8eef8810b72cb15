"""`amlbot check-config` explains the rules; `amlbot policy explain` shows which one decides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.paths import RULES_CONFIG, UNPRICED_REGION, rules_config_in


def amlbot(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("AMLBOT_CONFIG", None)
    # The example's region (eastus) is priced by the shipped snapshot, as on a new machine.
    env.pop("AMLBOT_PRICE_SNAPSHOT", None)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_check_config_explains_the_rules_in_order() -> None:
    result = amlbot("check-config", str(RULES_CONFIG))
    assert result.returncode == 0, result.stderr
    assert "budget: $500.00 a month (spend from the bot's job records)" in result.stdout
    assert "    5. cpu-short: CPU cluster, at most 4h, asked by a member -> auto-approve" in (
        result.stdout
    )
    assert "    7. gpu: GPU cluster -> one approval from group `gpu-approvers`" in result.stdout


def test_check_config_shows_each_clusters_price_and_where_it_came_from() -> None:
    result = amlbot("check-config", str(RULES_CONFIG))
    assert (
        "  cluster gpu-cluster: STANDARD_NC6s_v3, 2 nodes (min 0), dedicated, $3.06/node-hour "
        "(snapshot of 2024-01-01, eastus)\n" in result.stdout
    )
    assert "warning: no price" not in result.stdout


def test_check_config_warns_when_rules_on_money_meet_sizes_without_a_price(
    tmp_path: Path,
) -> None:
    config = tmp_path / "rules.yml"
    config.write_text(rules_config_in(UNPRICED_REGION), encoding="utf-8")

    result = amlbot("check-config", str(config))

    assert result.returncode == 0, result.stderr
    assert "  cluster cpu-cluster: STANDARD_DS3_V2, 4 nodes (min 0), dedicated, no price known" in (
        result.stdout
    )
    assert (
        "  warning: no price is known for STANDARD_DS3_V2 (cpu-cluster), STANDARD_NC6s_v3 "
        f"(gpu-cluster), STANDARD_ND96ASR_V4 (big-gpu) in {UNPRICED_REGION} (read from the price "
        "snapshot; a running bot also fetches them from the Retail Prices API): until one is, "
        "their costs read unknown and the rules on money ask people instead of deciding\n"
    ) in result.stdout


def test_check_config_without_rules_says_the_built_in_policy_applies() -> None:
    result = amlbot("check-config")
    assert "rules: none (access always needs a lead; jobs run with a grant)" in result.stdout


def test_policy_explain_names_the_deciding_rule_and_why() -> None:
    result = amlbot(
        "policy",
        "explain",
        "--config",
        str(RULES_CONFIG),
        "--as",
        "alice",
        "--spent",
        "410",
        "access request gpu-cluster --for 2h --reason test",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  3. skip  costly: est. $12.24 is not above $100.00" in lines
    assert "  4. MATCH budget-nearly-spent: budget 84% used with this request (above 80%)" in lines
    assert lines[-1] == (
        "Decision: needs two team leads: budget 84% used with this request (above 80%) "
        "(policy rule `budget-nearly-spent`)"
    )


def test_policy_explain_regrant_uses_the_given_last_grant() -> None:
    result = amlbot(
        "policy",
        "explain",
        "--config",
        str(RULES_CONFIG),
        "--as",
        "alice",
        "--last-grant-ago",
        "3d",
        "access request gpu-cluster --for 2h --reason test",
    )
    assert (
        "Decision: auto-approved: access request, asked by a member, same access granted 3d "
        "ago, within policy rule `regrant`" in result.stdout
    )


def test_policy_explain_refuses_other_commands_clearly() -> None:
    result = amlbot("policy", "explain", "--as", "alice", "job list")
    assert result.returncode == 2
    assert "policy explain takes an `access request` or a `job submit`" in result.stderr
