"""Teams and policy: one YAML file, validated into these models.

In the spirit of the enterprise set-up `config.yml`: workspaces with their Azure
coordinates, their team leads and data scientists, their clusters, and what is allowed.
"""

from __future__ import annotations

import difflib
import enum
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from approvals.config_access import (
    BreakGlassPolicy,
    DriftPolicy,
    EscalationPolicy,
    UntilDonePolicy,
)
from approvals.config_access import cross_check as cross_check_access
from approvals.rule_models import ApproverGroup, Budget, Rule
from commands.durations import parse_duration
from workspaces.types import AzureCoordinates, ClusterSpec, InstanceSpec, Priority


class ConfigError(Exception):
    """Configuration that cannot be used; `errors` name each key path and what is allowed."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    return value


class Action(enum.StrEnum):
    ACCESS = "access"
    DATASTORE = "datastore"
    JOB = "job"
    COMPUTE = "compute"  # idle-compute actions: stop an instance, set a cluster's minimum


class AccessPolicy(_Strict):
    default_duration: timedelta = timedelta(hours=4)
    max_duration: timedelta = timedelta(days=2)
    role: str = "AzureML Data Scientist"
    scope: Literal["compute", "workspace"] = "compute"
    mode: Literal["rbac", "pim"] = "rbac"

    _durations = field_validator("default_duration", "max_duration", mode="before")(_duration)


class JobPolicy(_Strict):
    # A job's expected duration when `--max-duration` is not given: its cost estimate and,
    # in Azure, its timeout (`limits.timeout`). None: no limit, and no estimate in money.
    default_max_duration: timedelta | None = None
    max_duration: timedelta = timedelta(days=7)
    # More instances than this needs a lead even with an active grant (None: up to `nodes`).
    max_instances_without_approval: int | None = Field(default=None, ge=1)
    # Clusters on which every job needs a lead.
    approval_required_on: list[str] = Field(default_factory=list)
    # Without an active grant: refuse with the command that fixes it, or ask a lead.
    without_grant: Literal["refuse", "approval"] = "refuse"

    _durations = field_validator("default_max_duration", "max_duration", mode="before")(_duration)


class DatastorePolicy(_Strict):
    # A lead registering a datastore needs no second opinion.
    leads_register_at_once: bool = True
    # Key Vault holding secrets for credential-based datastores (never secrets from chat).
    key_vault: str | None = None


# Azure's own default for a new cluster, and what the seeds and the idle fix set.
RECOMMENDED_IDLE_SECONDS_BEFORE_SCALE_DOWN = 120


class IdlePolicy(_Strict):
    sweep_interval: timedelta = timedelta(minutes=15)
    idle_threshold: timedelta = timedelta(minutes=30)
    realert_interval: timedelta = timedelta(hours=4)
    max_idle_seconds_before_scale_down: int = 600
    # What the digest's "Set idle time" button sets. At least 1 s: azure-ai-ml cannot send 0.
    recommended_idle_seconds_before_scale_down: int = Field(
        default=RECOMMENDED_IDLE_SECONDS_BEFORE_SCALE_DOWN, ge=1
    )

    _durations = field_validator(
        "sweep_interval", "idle_threshold", "realert_interval", mode="before"
    )(_duration)

    @model_validator(mode="after")
    def _recommended_within_max(self) -> IdlePolicy:
        # Otherwise the fix would set a value the next sweep flags again.
        if (
            self.recommended_idle_seconds_before_scale_down
            > self.max_idle_seconds_before_scale_down
        ):
            raise ValueError(
                f"recommended_idle_seconds_before_scale_down "
                f"({self.recommended_idle_seconds_before_scale_down}) cannot exceed "
                f"max_idle_seconds_before_scale_down ({self.max_idle_seconds_before_scale_down})"
            )
        return self


class Policy(_Strict):
    # Ordered risk rules (approvals/rules.py); the first that matches a request decides it.
    # Empty: the fixed behaviour below (access always needs a lead, jobs by `jobs:`).
    rules: list[Rule] = Field(default_factory=list)
    request_ttl: timedelta = timedelta(hours=24)
    remind_before_expiry: timedelta = timedelta(hours=2)
    grant_expiry_warning: timedelta = timedelta(minutes=15)
    job_poll_interval: timedelta = timedelta(minutes=1)
    two_approvers: list[Action] = Field(default_factory=list)
    access: AccessPolicy = AccessPolicy()
    jobs: JobPolicy = JobPolicy()
    datastores: DatastorePolicy = DatastorePolicy()
    idle: IdlePolicy = IdlePolicy()
    # Access that ends with the work and stays true (approvals/config_access.py).
    until_done: UntilDonePolicy = UntilDonePolicy()
    escalation: EscalationPolicy = EscalationPolicy()
    break_glass: BreakGlassPolicy = BreakGlassPolicy()
    drift: DriftPolicy = DriftPolicy()

    _durations = field_validator(
        "request_ttl",
        "remind_before_expiry",
        "grant_expiry_warning",
        "job_poll_interval",
        mode="before",
    )(_duration)


class Person(_Strict):
    """Someone the bot knows. Identity is the Slack user id (or the console name), never a
    display name; an e-mail is resolved to a Slack user id by the Slack edge."""

    name: str
    slack_id: str | None = Field(default=None, pattern=r"^[UW][A-Z0-9]{2,20}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    object_id: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
    )


class ClusterConfig(_Strict):
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


class InstanceConfig(_Strict):
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


class WorkspaceConfig(_Strict):
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


class CloudConfig(_Strict):
    name: Literal["AzureCloud", "AzureUSGovernment", "AzureChinaCloud", "custom"] = "AzureCloud"
    # Only for name: custom.
    resource_manager: str | None = None
    active_directory: str | None = None
    studio: str | None = None
    # Microsoft Graph (e-mail -> object id) and Key Vault DNS suffix of a custom cloud.
    graph: str | None = None
    key_vault_suffix: str | None = None

    @model_validator(mode="after")
    def _custom_needs_endpoint(self) -> CloudConfig:
        if self.name == "custom" and not self.resource_manager:
            raise ValueError(
                "a custom cloud needs resource_manager, e.g. https://management.contoso.example/"
            )
        return self


class AppConfig(_Strict):
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
                        hint = _did_you_mean(ref, list(self.people))
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
                        f"{_did_you_mean(group, list(self.groups))}"
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


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        result = dict(base)
        for key, value in override.items():
            result[key] = _deep_merge(base.get(key), value)
        return result
    return override if override is not None else base


def _rule_path(loc: tuple[int | str, ...], raw: Any) -> str:
    """`workspaces.demo.policy.rules[2] (gpu).when.max_hours`: a rule's index in brackets
    and its name after it, so the error points at the rule by both."""
    parts: list[str] = []
    node = raw
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            node = item
            if not (parts and parts[-1].endswith("rules")):
                parts.append(str(part))
                continue
            name = item.get("name") if isinstance(item, dict) else None
            parts[-1] += f"[{part}]" + (f" ({name})" if isinstance(name, str) else "")
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def format_validation_error(error: ValidationError, raw: Any = None) -> list[str]:
    lines = []
    for item in error.errors():
        path = _rule_path(item["loc"], raw) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        lines.append(f"{path}: {message}")
    return lines


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
