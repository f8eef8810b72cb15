"""Help is built from the grammar table, so it cannot drift from what the parser accepts."""

from __future__ import annotations

import pytest

from commands.grammar import SPECS, Spec
from commands.help import help_text


def test_the_overview_lists_every_command_on_one_line_each() -> None:
    lines = help_text(None).splitlines()
    for spec in SPECS:
        assert sum(f"`/aml {spec.path}`" in line for line in lines) == 1


def test_an_empty_topic_is_the_overview() -> None:
    assert help_text("") == help_text("  ") == help_text(None)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.path)
def test_each_command_shows_its_usage_every_argument_and_an_example(spec: Spec) -> None:
    text = help_text(spec.path)
    assert f"Usage: `{spec.usage()}`" in text
    for arg in spec.args:
        assert f"`{arg.flag or arg.metavar}`" in text
    assert "`--workspace`" in text
    assert f"Example: `{spec.example}`" in text


def test_a_verb_shows_all_its_subcommands() -> None:
    text = help_text("job")
    for sub in ("submit", "status", "list", "cancel", "watch", "unwatch"):
        assert f"`/aml job {sub}`" in text


def test_a_topic_may_start_with_slash_aml() -> None:
    assert help_text("/aml deny") == help_text("deny")


def test_lead_only_commands_say_so() -> None:
    assert "team leads" in help_text("audit")


def test_a_reason_says_who_reads_it() -> None:
    assert "`--reason`: why, for the team lead" in help_text("access request")
    assert "`--reason`: why not, for the person who asked" in help_text("deny")


def test_an_unknown_topic_suggests_the_closest_command() -> None:
    text = help_text("job sumbit")
    assert "No command `job sumbit`" in text
    assert "Did you mean `/aml help job submit`?" in text


def test_help_is_plain_text_with_backticked_commands() -> None:
    assert "*" not in help_text(None)


def test_overview_explains_policy_rules_and_costs() -> None:
    text = help_text()
    assert "policy rules" in text and "which rule decided and why" in text
    assert "`--max-duration` is also its time limit" in text
