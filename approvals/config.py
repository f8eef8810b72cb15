"""Teams and policy: one YAML file, validated into these models.

In the spirit of the enterprise set-up `config.yml`: workspaces with their Azure
coordinates, their team leads and data scientists, their clusters, and what is allowed
(the policy models: `approvals/config_policy.py`, `approvals/config_access.py`). How a
file that cannot be used reads to the operator: `approvals/config_errors.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from approvals.config_access import cross_check as cross_check_access
from approvals.config_errors import ConfigError, did_you_mean, format_validation_error
from approvals.config_policy import RECOMMENDED_IDLE_SECONDS_BEFORE_SCALE_DOWN, Policy
from approvals.rule_models import ApproverGroup, Budget
from approvals.strict_models import StrictModel
from workspaces.azure.settings import AzureWorkspaceSettings, CloudConfig
from workspaces.types import AzureCoordinates, ClusterSpec, InstanceSpec, Priority


class Person(StrictModel):
    """Someone the bot knows. Identity is the Slack user id (or the console name), never a
    display name; an e-mail is resolved to a Slack user id by the Slack edge."""

    name: str
    slack_id: str | None = Field(default=None, pattern=r"^[UW][A-Z0-9]{2,20}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    object_id: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
    )


class ClusterConfig(StrictModel):
    name: str = Field(pattern=r"^[a-zA-Z][a-zA-Z0-9-]{1,15}$")
    vm_sku: str
    nodes: int = Field(ge=1, le=1000)
    priority: Priority = Priority.DEDICATED
    min_nodes: int = Field(default=0, ge=0)
    idle_seconds_before_scale_down: int = Field(
        default=RECOMMENDED_IDLE_SECONDS_BEFORE_SCALE_DOWN, ge=0
    )
    # False for a shared cluster every member may use without an access grant.
    requires_grant: bool = True
    # Access to this cluster ends with the holder's work by default (`--until-done`).
    until_done: bool = False

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_spellings(cls, value: Any) -> Any:
        # The enterprise set-up scripts write `lowpriority`; the SDK writes `low_priority`.
        if isinstance(value, str) and value.replace("-", "").replace("_", "").lower() in {
            "lowpriority",
            "low",
        }:
            return Priority.LOW_PRIORITY
        return value

    @model_validator(mode="after")
    def _min_within_nodes(self) -> ClusterConfig:
        if self.min_nodes > self.nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) cannot exceed nodes ({self.nodes})")
        return self

    def spec(self) -> ClusterSpec:
        return ClusterSpec(
            name=self.name,
            vm_sku=self.vm_sku,
            nodes=self.nodes,
            min_nodes=self.min_nodes,
            priority=self.priority,
            idle_seconds_before_scale_down=self.idle_seconds_before_scale_down,
        )


class InstanceConfig(StrictModel):
    name: str = Field(pattern=r"^[a-zA-Z][a-zA-Z0-9-]{2,23}$")
    vm_sku: str
    assigned_to: str | None = None
    idle_shutdown_minutes: int | None = Field(default=None, ge=15)

    def spec(self) -> InstanceSpec:
        return InstanceSpec(
            name=self.name,
            vm_sku=self.vm_sku,
            assigned_to=self.assigned_to,
            idle_shutdown_minutes=self.idle_shutdown_minutes,
        )


class WorkspaceConfig(StrictModel):
    name: str
    azure: AzureCoordinates
    backend: Literal["local", "azure"] = "local"
    region: str | None = None
    environment: Literal["res", "dev", "pro"] | None = None
    channel: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]{2,20}$")
    dm_leads: bool = False
    team_leads: list[str] = Field(min_length=1)
    data_scientists: list[str] = Field(default_factory=list)
    clusters: list[ClusterConfig] = Field(default_factory=list)
    instances: list[InstanceConfig] = Field(default_factory=list)
    environments: list[str] = Field(
        default_factory=lambda: [
            "AzureML-sklearn-1.5@latest",
            "AzureML-pytorch-2.2-cuda12@latest",
            "AzureML-tensorflow-2.16-cuda12@latest",
        ]
    )
    policy: Policy = Policy()

    # Monthly spend limit in USD (budget.py); rules can refer to it.
    budget: Budget | None = None

    def cluster(self, name: str) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.name == name), None)

    @property
    def members(self) -> list[str]:
        return list(dict.fromkeys([*self.team_leads, *self.data_scientists]))

    def azure_settings(self) -> AzureWorkspaceSettings:
        """What the Azure adapter needs of this workspace."""
        return AzureWorkspaceSettings(
            coordinates=self.azure,
            environments=self.environments,
            key_vault=self.policy.datastores.key_vault,
            access_role=self.policy.access.role,
            access_mode=self.policy.access.mode,
        )


class AppConfig(StrictModel):
    people: dict[str, Person] = Field(default_factory=dict)
    # Named approver groups a rule's `approvers:` names.
    groups: dict[str, ApproverGroup] = Field(default_factory=dict)
    workspaces: dict[str, WorkspaceConfig] = Field(min_length=1)
    cloud: CloudConfig = CloudConfig()

    @model_validator(mode="before")
    @classmethod
    def _fill_names_and_defaults(cls, data: Any) -> Any:
        """Name entries after their keys and merge `defaults.policy` under each workspace's."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        defaults = data.pop("defaults", None) or {}
        default_policy = defaults.get("policy", {}) if isinstance(defaults, dict) else {}
        people = data.get("people") or {}
        if isinstance(people, dict):
            data["people"] = {
                key: {"name": key, **value} if isinstance(value, dict) else value
                for key, value in people.items()
            }
        workspaces = data.get("workspaces") or {}
        if isinstance(workspaces, dict):
            merged = {}
            for key, value in workspaces.items():
                if isinstance(value, dict):
                    value = {"name": key, **value}
                    value["policy"] = _deep_merge(default_policy, value.get("policy") or {})
                merged[key] = value
            data["workspaces"] = merged
        return data

    @model_validator(mode="after")
    def _references_resolve(self) -> AppConfig:
        problems = []
        for ws in self.workspaces.values():
            for role in ("team_leads", "data_scientists"):
                for index, ref in enumerate(getattr(ws, role)):
                    if ref not in self.people and not _is_inline_identity(ref):
                        hint = did_you_mean(ref, list(self.people))
                        problems.append(
                            f"workspaces.{ws.name}.{role}.{index}: '{ref}' is not a key of "
                            f"`people`, a Slack user id (U...) or an e-mail{hint}"
                        )
            for index, risk_rule in enumerate(ws.policy.rules):
                group = risk_rule.approvers
                if group is not None and group not in self.groups:
                    known = ", ".join(self.groups) or "none"
                    problems.append(
                        f"workspaces.{ws.name}.policy.rules[{index}] ({risk_rule.name}).approvers: "
                        f"no group '{group}' under `groups:` (groups: {known})"
                        f"{did_you_mean(group, list(self.groups))}"
                    )
                for cluster_name in risk_rule.when.clusters or []:
                    if ws.cluster(cluster_name) is None:
                        problems.append(
                            f"workspaces.{ws.name}.policy.rules[{index}] ({risk_rule.name})"
                            f".when.clusters: no cluster '{cluster_name}' in this workspace "
                            f"(clusters: {', '.join(c.name for c in ws.clusters) or 'none'})"
                        )
                needs_budget = (
                    risk_rule.when.budget_used_above is not None
                    or risk_rule.when.over_budget is not None
                )
                if needs_budget and ws.budget is None:
                    problems.append(
                        f"workspaces.{ws.name}.policy.rules[{index}] ({risk_rule.name}).when: "
                        f"refers to the budget, but the workspace has no `budget:` "
                        f"(e.g. budget: {{monthly_usd: 2000}})"
                    )
            for rule in ws.policy.jobs.approval_required_on:
                if ws.cluster(rule) is None:
                    problems.append(
                        f"workspaces.{ws.name}.policy.jobs.approval_required_on: no cluster "
                        f"'{rule}' in this workspace (clusters: "
                        f"{', '.join(c.name for c in ws.clusters) or 'none'})"
                    )
            problems += cross_check_access(
                ws.name,
                ws.policy,
                ws.members,
                lambda ref: ref in self.people or _is_inline_identity(ref),
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def person(self, ref: str) -> Person:
        """The person a workspace list entry names (an inline id or e-mail becomes one)."""
        if ref in self.people:
            return self.people[ref]
        if "@" in ref:
            return Person(name=ref, email=ref)
        return Person(name=ref, slack_id=ref)

    def all_people(self) -> list[Person]:
        refs = dict.fromkeys(
            [*self.people, *(m for ws in self.workspaces.values() for m in ws.members)]
        )
        return [self.person(ref) for ref in refs]


def _is_inline_identity(ref: str) -> bool:
    return "@" in ref or (ref[:1] in {"U", "W"} and ref.isupper() and ref.isalnum())


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        result = dict(base)
        for key, value in override.items():
            result[key] = _deep_merge(base.get(key), value)
        return result
    return override if override is not None else base


def parse_config(text: str, source: str = "<config>") -> AppConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must be a mapping with a `workspaces:` key"])
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc, raw)) from None


DEMO_CONFIG_PATH = Path(__file__).with_name("demo_config.yml")


def load_config(path: str | Path | None) -> AppConfig:
    """Load a configuration file; with no path, the built-in demo."""
    target = Path(path) if path else DEMO_CONFIG_PATH
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(target), [f"cannot read the file: {exc.strerror}"]) from None
    return parse_config(text, str(target))
