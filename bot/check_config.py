"""`amlbot check-config`: validate, summarise, and optionally reach Azure."""

from __future__ import annotations

import sys

from slack_sdk import WebClient

from approvals.config import load_config
from approvals.config_errors import ConfigError
from approvals.costs import money, node_hour_quote
from approvals.rule_models import Rule
from approvals.rules import describe_rule
from bot.slack.scopes import check_token
from commands.durations import format_duration
from shared.wording import counted
from workspaces.prices import DEFAULT_REGION


def check_config(
    path: str | None, *, online: bool = False, slack_client: WebClient | None = None
) -> int:
    """Validate and summarise; `online` also reaches Azure and, given a client with the
    bot token, asks Slack which scopes the token has."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"Configuration error in {exc.source}:", file=sys.stderr)
        for line in exc.errors:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"{path or 'built-in demo configuration'}: OK")
    print(f"cloud: {config.cloud.name}")
    for ws in config.workspaces.values():
        policy = ws.policy
        print(
            f"workspace {ws.name}: backend {ws.backend}, Azure "
            f"{ws.azure.subscription_id}/{ws.azure.resource_group}/{ws.azure.workspace_name}, "
            f"channel {ws.channel or '(none)'}"
        )
        print(f"  team leads: {', '.join(ws.team_leads)}")
        print(f"  data scientists: {', '.join(ws.data_scientists) or '(none)'}")
        unpriced: list[str] = []
        for cluster in ws.clusters:
            quote = node_hour_quote(cluster, ws.region)
            if quote is None:
                unpriced.append(f"{cluster.vm_sku} ({cluster.name})")
            price = (
                "no price known"
                if quote is None
                else f"{money(quote.usd_per_hour)}/node-hour ({quote.provenance()})"
            )
            print(
                f"  cluster {cluster.name}: {cluster.vm_sku}, {cluster.nodes} nodes "
                f"(min {cluster.min_nodes}), {cluster.priority.value}, {price}"
                + ("" if cluster.requires_grant else ", open to all members")
            )
        for instance in ws.instances:
            print(f"  instance {instance.name}: {instance.vm_sku}")
        print(
            f"  policy: access {policy.access.role} at {policy.access.scope} scope "
            f"({policy.access.mode}), requests expire after {format_duration(policy.request_ttl)}, "
            f"two approvers for: {', '.join(policy.two_approvers) or 'nothing'}"
        )
        if ws.budget is not None:
            print(
                f"  budget: ${ws.budget.monthly_usd:,.2f} a month (spend from "
                + (
                    "Azure Cost Management)"
                    if ws.budget.spend_from == "cost_management"
                    else "the bot's job records)"
                )
            )
        if policy.jobs.default_max_duration is not None:
            print(
                f"  jobs: time limit {format_duration(policy.jobs.default_max_duration)} unless "
                f"--max-duration (at most {format_duration(policy.jobs.max_duration)})"
            )
        if policy.rules:
            print("  rules (in order; the first that matches decides, else the built-in policy):")
            for index, rule in enumerate(policy.rules, start=1):
                print(f"    {index}. {describe_rule(rule)}")
        else:
            print("  rules: none (access always needs a lead; jobs run with a grant)")
        for name, group in config.groups.items():
            members = ", ".join(group.members) or "-"
            slack = f", Slack user group {group.slack_usergroup}" if group.slack_usergroup else ""
            print(f"  group {name}: {members}{slack}")
        if len(ws.team_leads) < 2 and policy.two_approvers:
            print("  warning: two approvers are required but the workspace has fewer than 2 leads")
        if unpriced and (ws.budget is not None or any(on_money(rule) for rule in policy.rules)):
            print(
                f"  warning: no price is known for {', '.join(unpriced)} in "
                f"{ws.region or DEFAULT_REGION} (read from the price snapshot; a running bot also "
                "fetches them from the Retail Prices API): until one is, their costs read "
                "unknown and the rules on money ask people instead of deciding"
            )
    if not online:
        return 0
    problems = 0
    for ws in config.workspaces.values():
        if ws.backend != "azure":
            print(f"workspace {ws.name}: local simulation, nothing to reach")
            continue
        from workspaces.azure import check_workspace_online

        found = check_workspace_online(ws.azure_settings(), config.cloud)
        if found:
            problems += len(found)
            print(f"workspace {ws.name}: {counted(len(found), 'problem')}")
            for line in found:
                print(f"  - {line}")
        else:
            print(f"workspace {ws.name}: reachable, the bot's identity holds every role it needs")
    if slack_client is not None:
        report = check_token(slack_client)
        problems += len(report.problems)
        print(
            f"Slack: {'problems' if report.problems else 'the bot token has every scope it needs'}"
        )
        for line in report.problems:
            print(f"  - {line}")
        for line in report.warnings:
            print(f"  warning: {line}")
    else:
        print("Slack: SLACK_BOT_TOKEN not set, the token's scopes were not checked")
    return 1 if problems else 0


def on_money(rule: Rule) -> bool:
    """Whether the rule has a condition on money, which an unknown price leaves unchecked."""
    when = rule.when
    return any(
        value is not None
        for value in (when.cost_above_usd, when.budget_used_above, when.over_budget)
    )
