"""The Prometheus alerting rules in deploy/prometheus: each parses, names only metrics the
bot serves (bot/metrics.py), says how bad it is, and is explained in the README's runbook."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from approvals.store import Store
from bot.metrics import Metrics
from workspaces.clock import SystemClock

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "amlbot-alerts.yml"
README = (ROOT / "README.md").read_text()
RULES: list[dict[str, Any]] = [
    rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]
]
NAMES = [rule["alert"] for rule in RULES]
# A series name in PromQL: a word that is not a function, keyword or label (those are
# followed by "(", or sit inside {...} or by(...)), which for us all start with amlbot_.
SERIES = re.compile(r"\bamlbot_[a-z0-9_]+")
DURATION = re.compile(r"^\d+[smhd]$")
SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_count", "_sum"],
    "gauge": [""],
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name a process serves on /metrics, its database gauges included."""
    metrics = Metrics()
    database = tmp_path_factory.mktemp("alerts") / "amlbot.sqlite3"
    metrics.watch_store(Store.open(f"sqlite:///{database}"), SystemClock())
    families: list[Metric] = list(metrics.registry.collect())
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def test_there_are_alerts_and_their_names_are_unique() -> None:
    assert len(NAMES) >= 5 and len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("rule", RULES, ids=NAMES)
def test_each_alert_names_only_metrics_the_bot_serves(
    rule: dict[str, Any], served: set[str]
) -> None:
    named = set(SERIES.findall(rule["expr"]))
    assert named, "the expression names no amlbot metric"
    assert named <= served, f"not served: {sorted(named - served)}"


@pytest.mark.parametrize("rule", RULES, ids=NAMES)
def test_each_alert_parses_and_says_how_bad_and_what_it_means(rule: dict[str, Any]) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert re.fullmatch(r"Amlbot[A-Z][A-Za-z]+", rule["alert"])
    expr = rule["expr"]
    for opening, closing in ("()", "{}", "[]"):
        depth = 0
        for character in expr:
            depth += (character == opening) - (character == closing)
            assert depth >= 0, f"unbalanced {opening}{closing}"
        assert depth == 0, f"unbalanced {opening}{closing}"
    assert expr.count('"') % 2 == 0
    assert "for" not in rule or DURATION.match(rule["for"])
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.mark.parametrize("name", NAMES)
def test_the_readme_runbook_explains_each_alert(name: str) -> None:
    alerts = README.split("### Alerts", 1)[1]
    assert f"`{name}`" in alerts


def test_the_metric_check_would_catch_a_misspelt_metric(served: set[str]) -> None:
    assert "amlbot_inbox_oldest_age_seconds" in served
    assert "amlbot_azure_requests_total" in served
    assert "amlbot_inbox_oldest_age" not in served
