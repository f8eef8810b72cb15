"""Configuration: the demo loads, and mistakes are named by key path with what is allowed."""

from __future__ import annotations

import logging
import textwrap

import pytest

from approvals.config import load_config, parse_config
from approvals.config_errors import ConfigError
from bot.cli import main
from tests.paths import EXAMPLE_CONFIG

MINIMAL = """
people:
  lee: {slack_id: U0LEE0001}
  sam: {email: sam@example.com}
workspaces:
  team-a:
    azure: {subscription_id: s, resource_group: rg, workspace_name: w}
    team_leads: [lee]
    data_scientists: [sam]
    clusters:
      - {name: gpu, vm_sku: STANDARD_NC6s_v3, nodes: 2, priority: lowpriority}
"""


def test_demo_configuration_has_the_documented_people_and_clusters() -> None:
    config = load_config(None)
    demo = config.workspaces["demo"]
    assert demo.team_leads == ["bob"]
    assert demo.data_scientists == ["alice", "carol"]
    assert [(c.name, c.vm_sku, c.nodes) for c in demo.clusters] == [
        ("cpu-cluster", "STANDARD_DS3_V2", 4),
        ("gpu-cluster", "STANDARD_NC6s_v3", 2),
    ]
    assert demo.channel == "C0DEMO0001"
    assert config.people["alice"].slack_id == "U0ALICE01"
    assert len(demo.instances) == 1


def test_example_file_under_deploy_is_the_demo() -> None:
    assert load_config(str(EXAMPLE_CONFIG)) == load_config(None)


def test_seed_style_priority_spelling_is_accepted() -> None:
    config = parse_config(MINIMAL)
    assert config.workspaces["team-a"].clusters[0].priority.value == "low_priority"


def test_defaults_policy_is_merged_under_workspace_policy() -> None:
    text = MINIMAL + textwrap.dedent(
        """
        defaults:
          policy:
            request_ttl: 2h
            access: {max_duration: 8h, role: Reader}
        """
    )
    text = text.replace(
        "    team_leads: [lee]", "    team_leads: [lee]\n    policy: {access: {role: Custom}}"
    )
    policy = parse_config(text).workspaces["team-a"].policy
    assert policy.request_ttl.total_seconds() == 7200
    assert policy.access.role == "Custom"
    assert policy.access.max_duration.total_seconds() == 8 * 3600


def test_unknown_person_reference_names_the_path_and_suggests() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL.replace("data_scientists: [sam]", "data_scientists: [sma]"))
    assert any(
        "workspaces.team-a.data_scientists.0" in e and "did you mean 'sam'" in e
        for e in caught.value.errors
    )


def test_bad_enum_value_lists_the_allowed_values() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL.replace("priority: lowpriority", "priority: spot"))
    (error,) = caught.value.errors
    assert error.startswith("workspaces.team-a.clusters.0.priority")
    assert "dedicated" in error and "low_priority" in error


def test_unknown_key_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL.replace("team_leads: [lee]", "team_leads: [lee]\n    chanel: C1"))
    assert caught.value.errors == [
        "workspaces.team-a.chanel: unknown key (check its spelling and indentation)"
    ]


def test_cluster_name_longer_than_sixteen_characters_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL.replace("name: gpu,", "name: a-very-long-cluster-name,"))
    assert "workspaces.team-a.clusters.0.name" in caught.value.errors[0]


def test_bad_duration_in_policy_is_explained() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + "defaults: {policy: {request_ttl: soon}}")
    assert "request_ttl" in caught.value.errors[0]
    assert "90m" in caught.value.errors[0]


def test_a_recommended_idle_time_above_the_policy_maximum_is_refused() -> None:
    idle = (
        "{max_idle_seconds_before_scale_down: 300, recommended_idle_seconds_before_scale_down: 600}"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + f"defaults: {{policy: {{idle: {idle}}}}}")
    assert "cannot exceed max_idle_seconds_before_scale_down (300)" in caught.value.errors[0]


def test_not_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("workspaces: [")


def test_check_config_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "workspace demo: backend local" in out
    assert "cluster gpu-cluster: STANDARD_NC6s_v3, 2 nodes" in out
    assert "requests expire after 1d," in out  # the bot's own duration format


def test_an_unknown_log_level_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMLBOT_LOG_LEVEL", "LOUD")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "AMLBOT_LOG_LEVEL='LOUD'" in err
    assert all(level in err for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))


def test_a_log_level_in_lower_case_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLBOT_LOG_LEVEL", "debug")
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # the CLI sets it; later tests keep theirs
    assert main(["check-config"]) == 0


def test_check_config_exits_1_with_errors(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yml"
    bad.write_text(MINIMAL.replace("nodes: 2", "nodes: zero"))
    assert main(["check-config", str(bad)]) == 1
    assert "workspaces.team-a.clusters.0.nodes" in capsys.readouterr().err
