"""Rule configuration errors name the rule and the key path, with what is allowed."""

from __future__ import annotations

import pytest

from approvals.config import parse_config
from approvals.config_errors import ConfigError

HEAD = """
people:
  bob: {slack_id: U0BOB0001}
groups:
  gpu-approvers: {members: [bob]}
workspaces:
  demo:
    azure: {subscription_id: 00000000-0000-4000-8000-000000000000,
            resource_group: rg, workspace_name: mlw}
    team_leads: [bob]
    clusters: [{name: cpu-cluster, vm_sku: STANDARD_DS3_V2, nodes: 2}]
"""


def errors_of(rules: str, extra: str = "") -> list[str]:
    text = HEAD + extra + "    policy:\n      rules:\n" + rules
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.errors


def test_bad_max_hours_names_the_rule_and_the_key() -> None:
    errors = errors_of(
        "        - {name: cpu-short, decide: auto}\n"
        "        - {name: gpu, decide: lead}\n"
        "        - {name: long, when: {max_hours: -2}, decide: lead}\n"
    )
    assert errors == [
        "workspaces.demo.policy.rules[2] (long).when.max_hours: must be a positive number, e.g. 4"
    ]


def test_unknown_decision_lists_the_allowed_ones() -> None:
    (error,) = errors_of("        - {name: x, decide: maybe}\n")
    assert error.startswith("workspaces.demo.policy.rules[0] (x).decide: 'maybe' is not a")
    assert "auto, lead, two_leads or refuse" in error


def test_unknown_condition_is_named() -> None:
    (error,) = errors_of("        - {name: x, when: {max_hour: 4}, decide: auto}\n")
    assert error == (
        "workspaces.demo.policy.rules[0] (x).when.max_hour: unknown key "
        "(check its spelling and indentation)"
    )


def test_unknown_group_is_named_with_a_suggestion() -> None:
    (error,) = errors_of("        - {name: gpu, decide: lead, approvers: gpu-aprovers}\n")
    assert "rules[0] (gpu).approvers: no group 'gpu-aprovers'" in error
    assert "did you mean 'gpu-approvers'" in error


def test_budget_rule_without_a_budget_says_how_to_set_one() -> None:
    (error,) = errors_of("        - {name: broke, when: {over_budget: true}, decide: refuse}\n")
    assert "rules[0] (broke).when: refers to the budget" in error
    assert "budget: {monthly_usd: 2000}" in error


def test_budget_fraction_must_be_at_most_one() -> None:
    (error,) = errors_of(
        "        - {name: nearly, when: {budget_used_above: 80}, decide: two_leads}\n",
        extra="    budget: {monthly_usd: 1000}\n",
    )
    assert error.endswith(
        "when.budget_used_above: must be a fraction of the budget above 0 and at most 1, e.g. 0.8"
    )


def test_auto_rule_cannot_name_approvers() -> None:
    (error,) = errors_of("        - {name: x, decide: auto, approvers: gpu-approvers}\n")
    assert "`approvers:` only applies to decide: lead or two_leads" in error
