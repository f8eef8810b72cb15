"""The `/aml` grammar as one table: it drives both the parser and the help text."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from commands import models as m
from commands.models import Command

ValueKind = Literal[
    "text",
    "duration",
    "int",
    "id",
    "compute",
    "datastore",
    "account",
    "container",
    "store_kind",
    "environment",
    "code",
    "input",
    "job",
    "experiment",
    "workspace",
    "flag",
]


@dataclass(frozen=True)
class Arg:
    """A positional argument (`name` is the model field) or a flag (`flag` set)."""

    name: str
    metavar: str
    kind: ValueKind = "text"
    required: bool = True
    flag: str | None = None
    help: str = ""
    repeatable: bool = False


@dataclass(frozen=True)
class Spec:
    verbs: tuple[str, ...]
    model: type[Command]
    summary: str
    example: str
    args: tuple[Arg, ...] = ()
    lead_only: bool = False
    notes: str = ""
    positional: tuple[Arg, ...] = field(init=False)
    flags: tuple[Arg, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "positional", tuple(a for a in self.args if a.flag is None))
        object.__setattr__(self, "flags", tuple(a for a in self.args if a.flag is not None))

    @property
    def path(self) -> str:
        return " ".join(self.verbs)

    def usage(self) -> str:
        parts = ["/aml", *self.verbs]
        for arg in self.positional:
            parts.append(arg.metavar if arg.required else f"[{arg.metavar}]")
        for arg in self.flags:
            text = f"{arg.flag}" if arg.kind == "flag" else f"{arg.flag} {arg.metavar}"
            text = f"{text}..." if arg.repeatable else text
            parts.append(text if arg.required else f"[{text}]")
        parts.append("[--workspace WS]")
        return " ".join(parts)


REASON = Arg("reason", "TEXT", flag="--reason", help="why, for the team lead (3-500 characters)")

SPECS: tuple[Spec, ...] = (
    Spec(
        ("help",),
        m.Help,
        "show commands, or one command's usage",
        "/aml help job submit",
        (Arg("topic", "COMMAND", required=False),),
    ),
    Spec(
        ("whoami",),
        m.WhoAmI,
        "who the bot thinks you are, your workspaces and grants",
        "/aml whoami",
    ),
    Spec(
        ("compute", "list"),
        m.ComputeList,
        "clusters and instances, with nodes and cost",
        "/aml compute list",
    ),
    Spec(
        ("access", "request"),
        m.AccessRequest,
        "ask a team lead for time-bound cluster access",
        '/aml access request gpu-cluster --for 2h --reason "fine-tune BERT"',
        (
            Arg("cluster", "CLUSTER", "compute"),
            Arg(
                "duration",
                "DURATION",
                "duration",
                required=False,
                flag="--for",
                help="how long, e.g. 90m, 4h, 2d (default: the workspace's policy); with "
                "--until-done, the time limit",
            ),
            REASON,
            Arg(
                "until_done",
                "",
                "flag",
                required=False,
                flag="--until-done",
                help="end the access when your work on the cluster ends: after your last job "
                "there finished and nothing of yours ran for the policy's idle period, or at "
                "the time limit, whichever comes first",
            ),
            Arg(
                "emergency",
                "",
                "flag",
                required=False,
                flag="--emergency",
                help="break-glass: approve it yourself for a short time when policy allows; "
                "every lead is told at once and one must review it afterwards",
            ),
        ),
        notes="`--until-done` ties the access to your jobs on the cluster (some clusters do "
        "so by default). `--emergency` is for incidents only: it is audited and reviewed.",
    ),
    Spec(
        ("access", "list"),
        m.AccessList,
        "active grants (yours; all of them for leads)",
        "/aml access list",
    ),
    Spec(
        ("access", "revoke"),
        m.AccessRevoke,
        "end a grant now (the grantee or a lead)",
        "/aml access revoke 3",
        (Arg("grant_id", "GRANT_ID", "id"),),
    ),
    Spec(
        ("datastore", "register"),
        m.DatastoreRegister,
        "register a blob, ADLS Gen2 or file share datastore (identity-based, no secret)",
        "/aml datastore register trainingdata --kind blob --account contosodata "
        "--container training",
        (
            Arg("name", "NAME", "datastore"),
            Arg("store_kind", "blob|adls-gen2|file", "store_kind", flag="--kind"),
            Arg("account", "ACCOUNT", "account", flag="--account", help="storage account name"),
            Arg(
                "container",
                "NAME",
                "container",
                flag="--container",
                help="blob container, ADLS Gen2 filesystem or file share",
            ),
            Arg("description", "TEXT", required=False, flag="--description"),
        ),
        notes="Leads register at once; others wait for a lead.",
    ),
    Spec(
        ("datastore", "list"), m.DatastoreList, "datastores of the workspace", "/aml datastore list"
    ),
    Spec(
        ("job", "submit"),
        m.JobSubmit,
        "run a command job on a cluster",
        "/aml job submit --compute gpu-cluster --environment azureml:AzureML-sklearn-1.5@latest"
        ' --command "python train.py"',
        (
            Arg("compute", "CLUSTER", "compute", flag="--compute"),
            Arg(
                "environment",
                "ENV",
                "environment",
                flag="--environment",
                help="azureml:NAME@latest, azureml:NAME:VERSION or an image",
            ),
            Arg("command", "CMD", flag="--command", help="the command to run, quoted"),
            Arg(
                "code",
                "REF",
                "code",
                required=False,
                flag="--code",
                help="registered code asset azureml:NAME:VERSION or an https:// storage folder URL "
                "(not git)",
            ),
            Arg(
                "inputs",
                "NAME=URI",
                "input",
                required=False,
                flag="--input",
                repeatable=True,
                help="azureml://datastores/..., https://, abfss://, azureml:NAME:VERSION",
            ),
            Arg(
                "instances",
                "N",
                "int",
                required=False,
                flag="--instances",
                help="nodes to run on (default 1)",
            ),
            Arg(
                "max_duration",
                "DURATION",
                "duration",
                required=False,
                flag="--max-duration",
                help="the job's time limit in Azure, e.g. 2h; its cost estimate is "
                "nodes x price x this (default: the workspace's policy)",
            ),
            Arg("experiment", "NAME", "experiment", required=False, flag="--experiment"),
            Arg("name", "NAME", "job", required=False, flag="--name", help="a display name"),
        ),
        notes="Runs at once with an active grant on the cluster, unless a policy rule asks for "
        "a lead (e.g. GPU, or a high estimated cost); otherwise ask for access. The reply "
        "shows the estimated cost and the rule that decided.",
    ),
    Spec(
        ("job", "status"),
        m.JobStatusQuery,
        "a job's status, error and studio link",
        "/aml job status amlbot-7-1a2b3c4d",
        (Arg("job", "JOB", "job"),),
    ),
    Spec(
        ("job", "list"),
        m.JobList,
        "jobs the bot started in the workspace",
        "/aml job list --mine",
        (Arg("mine", "", "flag", required=False, flag="--mine", help="only yours"),),
    ),
    Spec(
        ("job", "cancel"),
        m.JobCancel,
        "cancel a job (its owner or a lead)",
        "/aml job cancel amlbot-7-1a2b3c4d",
        (Arg("job", "JOB", "job"),),
    ),
    Spec(
        ("job", "watch"),
        m.JobWatch,
        "be told when a job the bot did not start changes",
        "/aml job watch my-job-42",
        (Arg("job", "JOB", "job"),),
    ),
    Spec(
        ("job", "unwatch"),
        m.JobUnwatch,
        "stop watching a job",
        "/aml job unwatch my-job-42",
        (Arg("job", "JOB", "job"),),
    ),
    Spec(
        ("request", "list"),
        m.RequestList,
        "your requests, and those waiting for you",
        "/aml request list",
    ),
    Spec(
        ("request", "show"),
        m.RequestShow,
        "one request in full",
        "/aml request show 7",
        (Arg("request_id", "ID", "id"),),
    ),
    Spec(
        ("request", "cancel"),
        m.RequestCancel,
        "withdraw your pending request",
        "/aml request cancel 7",
        (Arg("request_id", "ID", "id"),),
    ),
    Spec(
        ("approve",),
        m.Approve,
        "approve a request (team leads)",
        "/aml approve 7",
        (Arg("request_id", "ID", "id"),),
        lead_only=True,
    ),
    Spec(
        ("deny",),
        m.Deny,
        "deny a request with a reason (team leads)",
        '/aml deny 7 --reason "use the shared lake instead"',
        (
            Arg("request_id", "ID", "id"),
            replace(REASON, help="why not, for the person who asked (3-500 characters)"),
        ),
        lead_only=True,
    ),
    Spec(
        ("audit",),
        m.Audit,
        "the audit trail (team leads)",
        "/aml audit --since 7d",
        (Arg("since", "DURATION", "duration", required=False, flag="--since"),),
        lead_only=True,
    ),
    Spec(("idle",), m.IdleReport, "idle compute that costs money, now", "/aml idle"),
    Spec(
        ("drift", "check"),
        m.DriftCheck,
        "compare Azure's role assignments and cluster settings with the bot's records now "
        "(team leads; it also runs nightly)",
        "/aml drift check",
        lead_only=True,
        notes="Reports assignments the bot did not make, grants Azure lacks, revocations "
        "that did not take, and clusters whose minimum or idle time drifted back.",
    ),
    Spec(
        ("drift", "fix"),
        m.DriftFix,
        "fix one drift finding: revoke, re-grant or set the cluster back (team leads)",
        "/aml drift fix 4",
        (Arg("finding_id", "FINDING_ID", "id"),),
        lead_only=True,
    ),
)

WORKSPACE_FLAG = Arg("workspace", "WS", "workspace", required=False, flag="--workspace")


def verb_groups() -> dict[str, list[Spec]]:
    groups: dict[str, list[Spec]] = {}
    for spec in SPECS:
        groups.setdefault(spec.verbs[0], []).append(spec)
    return groups
