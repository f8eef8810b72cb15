"""Help text, built from the same grammar table the parser uses.

Plain text with backticks around commands: Slack renders it as mrkdwn, the console as is.
"""

from __future__ import annotations

import difflib
import functools

from commands.grammar import SPECS, WORKSPACE_FLAG, Arg, Spec, verb_groups


def help_text(topic: str | None = None) -> str:
    """The overview for no topic; otherwise the usage of every command the topic names
    (`job` gives all job commands, `job submit` one)."""
    if not topic or not topic.strip():
        return _overview()
    words = tuple(topic.lower().removeprefix("/aml").split())
    if not words:
        return _overview()
    matches = [spec for spec in SPECS if spec.verbs[: len(words)] == words[: len(spec.verbs)]]
    if not matches:
        return _unknown_topic(topic, words)
    return "\n\n".join(_command_help(spec) for spec in matches)


@functools.cache  # the grammar is fixed: built once, not on every `/aml help`
def _overview() -> str:
    lines = ["amlbot: Azure ML workspaces from Slack. Commands:"]
    for spec in SPECS:
        lead = " (team leads)" if _lead_only_unsaid(spec) else ""
        lines.append(f"• `/aml {spec.path}`: {spec.summary}{lead}")
    lines.append(
        "Every command takes `--workspace WS` when you belong to several workspaces. "
        "`/aml help COMMAND` shows one command in full."
    )
    lines.append(
        "Approvals follow the workspace's policy rules: a low-risk request (e.g. a short "
        "CPU grant) is approved at once, a GPU or costly one goes to a lead or a named "
        "group, two leads when the budget is nearly spent, and some are refused; the reply "
        "and the card say which rule decided and why. Cards show the estimated cost "
        "(nodes x price x duration; a job's `--max-duration` is also its time limit) and "
        "the month's spend against the budget; a finished job's notice says what it cost."
    )
    return "\n".join(lines)


def _lead_only_unsaid(spec: Spec) -> bool:
    return spec.lead_only and "team lead" not in spec.summary


def _unknown_topic(topic: str, words: tuple[str, ...]) -> str:
    paths = [spec.path for spec in SPECS]
    close = difflib.get_close_matches(" ".join(words), paths, n=1, cutoff=0.6)
    hint = f" Did you mean `/aml help {close[0]}`?" if close else ""
    groups = ", ".join(sorted(verb_groups()))
    return f"No command `{topic[:40]}`.{hint} Commands: {groups}. Try `/aml help`."


# What a value of each kind is, for arguments the table gives no help line of their own.
_KIND_HELP: dict[str, str] = {
    "text": "free text, quoted when it has spaces",
    "duration": "a duration like 90m, 4h, 2d",
    "id": "the number shown with it, like 7 or #7",
    "compute": "a cluster name, as `/aml compute list` shows it",
    "datastore": "a datastore name: letters, digits and underscores",
    "job": "a job name, as `/aml job list` shows it",
    "experiment": "an experiment to group the job under",
    "workspace": "the workspace, when you belong to several",
}


def _describe(arg: Arg) -> str:
    name = arg.flag or arg.metavar
    what = arg.help or _KIND_HELP.get(arg.kind, arg.metavar.lower())
    optional = "" if arg.required else " (optional)"
    repeat = "; repeat it for more" if arg.repeatable else ""
    return f"  `{name}`: {what}{optional}{repeat}"


def _command_help(spec: Spec) -> str:
    lead = " Team leads only." if _lead_only_unsaid(spec) else ""
    lines = [f"`/aml {spec.path}`: {spec.summary}.{lead}", f"Usage: `{spec.usage()}`"]
    lines.extend(_describe(arg) for arg in (*spec.args, WORKSPACE_FLAG))
    if spec.notes:
        lines.append(spec.notes)
    lines.append(f"Example: `{spec.example}`")
    return "\n".join(lines)
