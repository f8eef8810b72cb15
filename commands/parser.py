"""`/aml ...` text -> a command model, or a `UserError` that says exactly what to fix."""

from __future__ import annotations

import difflib
import re
import shlex
from typing import Any

from pydantic import ValidationError

from commands import validation as v
from commands.durations import (
    DURATION_EXAMPLE,
    MAX_DURATION_TEXT,
    DurationTooLongError,
    parse_duration,
)
from commands.grammar import WORKSPACE_FLAG, Arg, Spec, verb_groups
from commands.models import AnyCommand, Help
from commands.plain_text import first_unstorable, unstorable_message
from shared.errors import UsageError, secret_refusal
from shared.secrets import find_secret
from shared.values import DatastoreKind

# Slack's own limit on a message is far higher; past this length it is a paste, not a command.
MAX_LENGTH = 4000
# (fewest, most) characters of free-text values. The reason is read by a lead on a card;
# the job command is shown back on cards and in the audit trail.
TEXT_LIMITS: dict[str, tuple[int, int]] = {"reason": (3, 500), "command": (1, 2000)}
MAX_INSTANCES = 100  # at parse time; the core checks the cluster's own node count later

_DOUBLE_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})
_SINGLE_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'"})
# Phones turn a typed `--` into an em or en dash.
_DASHES = ("\u2014", "\u2013")
_ID = re.compile(r"#?([0-9]{1,9})")
_COUNT = re.compile(r"[0-9]{1,4}")


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def tokenize(text: str) -> list[str]:
    """Split like a shell. Typographic quotes count as straight ones, except that a curly
    apostrophe typed on a phone (it's) stays a letter when reading it as a quote cannot
    balance."""
    double_straightened = text.translate(_DOUBLE_QUOTES)
    for candidate in (double_straightened.translate(_SINGLE_QUOTES), double_straightened):
        try:
            return shlex.split(candidate)
        except ValueError:
            continue
    raise UsageError(
        "The command has an unbalanced quote: a `\"` or `'` is opened and never closed. Put "
        "text with spaces between matching quotes.",
        field="quoting",
        example='/aml access request gpu-cluster --reason "fine-tune BERT"',
    )


def _as_flag(token: str) -> str | None:
    if token.startswith("--") and token != "--":
        return token
    if token[:1] in _DASHES and token[1:2].isalpha():
        return "--" + token[1:]
    return None


def _find_spec(tokens: list[str]) -> tuple[Spec, list[str]]:
    groups = verb_groups()
    head = tokens[0].lower()
    if head not in groups:
        verbs = sorted(groups)
        raise UsageError(
            f"Unknown command `{tokens[0][:40]}`.{_suggest(head, verbs)} Commands: "
            f"{', '.join(verbs)}. `/aml help` lists them all.",
            field="command",
            example="/aml help",
        )
    candidates = groups[head]
    if len(candidates) == 1 and len(candidates[0].verbs) == 1:
        return candidates[0], tokens[1:]
    subs = [spec.verbs[1] for spec in candidates]
    if len(tokens) < 2 or _as_flag(tokens[1]) is not None:
        raise UsageError(
            f"`{head}` needs a subcommand: {', '.join(subs)}.",
            field="command",
            example=candidates[0].example,
        )
    sub = tokens[1].lower()
    for spec in candidates:
        if spec.verbs[1] == sub:
            return spec, tokens[2:]
    raise UsageError(
        f"Unknown command `{head} {tokens[1][:40]}`.{_suggest(sub, subs)} "
        f"`{head}` takes: {', '.join(subs)}.",
        field="command",
        example=candidates[0].example,
    )


def _invalid(label: str, raw: str, allowed: str, spec: Spec) -> UsageError:
    return UsageError(
        f"{label} `{raw[:40]}` is not valid: {allowed}.", field=label, example=spec.example
    )


def _text(arg: Arg, raw: str, spec: Spec) -> str:
    label = arg.flag or arg.metavar
    value = raw.strip()
    fewest, most = TEXT_LIMITS.get(arg.name, (1, MAX_LENGTH))
    if not fewest <= len(value) <= most:
        raise UsageError(
            f"{label} is {len(value)} character{'' if len(value) == 1 else 's'} long; "
            f"give {fewest} to {most} characters.",
            field=label,
            example=spec.example,
        )
    return value


def _refuse_unstorable(label: str, raw: str, spec: Spec) -> None:
    char = first_unstorable(raw)
    if char is not None:
        raise UsageError(unstorable_message(label, char), field=label, example=spec.example)


def _convert(arg: Arg, raw: str, spec: Spec) -> Any:
    label = arg.flag or arg.metavar
    _refuse_unstorable(label, raw, spec)
    if arg.kind == "duration":
        try:
            return parse_duration(raw)
        except DurationTooLongError:
            allowed = f"at most {MAX_DURATION_TEXT}, like {DURATION_EXAMPLE}"
            raise _invalid(label, raw, allowed, spec) from None
        except ValueError:
            allowed = f"write a duration longer than zero, like {DURATION_EXAMPLE}"
            raise _invalid(label, raw, allowed, spec) from None
    if arg.kind == "int":
        if not _COUNT.fullmatch(raw) or not 1 <= int(raw) <= MAX_INSTANCES:
            raise _invalid(label, raw, f"use a whole number from 1 to {MAX_INSTANCES}", spec)
        return int(raw)
    if arg.kind == "id":
        match = _ID.fullmatch(raw)
        if match is None or int(match.group(1)) == 0:
            raise _invalid(label, raw, "use the number shown with it, like 7 or #7", spec)
        return int(match.group(1))
    if arg.kind == "store_kind":
        kinds = [kind.value for kind in DatastoreKind]
        if raw.lower() not in kinds:
            raise UsageError(
                f"{label} `{raw[:40]}` is not a datastore kind: use one of "
                f"{', '.join(kinds)}.{_suggest(raw.lower(), kinds)}",
                field=label,
                example=spec.example,
            )
        return raw.lower()
    checks = {
        "compute": v.compute_name,
        "datastore": v.datastore_name,
        "account": v.storage_account,
        "container": v.container_name,
        "job": v.job_name,
        "experiment": v.experiment_name,
        "workspace": v.workspace_name,
        "environment": v.environment,
        "code": v.code_reference,
    }
    if arg.kind in checks:
        return checks[arg.kind](raw, label)
    return _text(arg, raw, spec)


def _add_input(values: dict[str, Any], arg: Arg, raw: str, spec: Spec) -> None:
    _refuse_unstorable(arg.flag or "--input", raw, spec)
    key, uri = v.input_pair(raw, arg.flag or "--input")
    inputs: dict[str, str] = values.setdefault(arg.name, {})
    if key in inputs:
        raise UsageError(
            f"{arg.flag} `{key}` is given twice; each input needs its own name.",
            field=arg.flag,
            example=spec.example,
        )
    inputs[key] = uri


def _unknown_flag(name: str, flags: list[str], spec: Spec) -> UsageError:
    return UsageError(
        f"`{spec.path}` has no flag `{name[:40]}`.{_suggest(name.lower(), flags)} "
        f"Flags: {', '.join(flags)}.",
        field=name[:40],
        example=spec.example,
    )


def _parse_args(spec: Spec, tokens: list[str]) -> dict[str, Any]:
    flags = {arg.flag: arg for arg in (*spec.flags, WORKSPACE_FLAG) if arg.flag}
    values: dict[str, Any] = {}
    positional: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        flag_token = _as_flag(token)
        if flag_token is None:
            if token.startswith("-") and f"-{token.lower()}" in flags:
                raise UsageError(
                    f"`{token[:40]}` has one dash; flags take two: `-{token.lower()}`.",
                    field=token[:40],
                    example=spec.example,
                )
            positional.append(token)
            continue
        name, has_value, inline = flag_token.partition("=")
        arg = flags.get(name.lower())
        if arg is None:
            raise _unknown_flag(name, list(flags), spec)
        if arg.kind == "flag":
            if has_value:
                raise UsageError(
                    f"{arg.flag} is a switch and takes no value; write just `{arg.flag}`.",
                    field=arg.flag,
                    example=spec.example,
                )
            values[arg.name] = True
            continue
        if has_value:
            raw = inline
        elif index < len(tokens) and _as_flag(tokens[index]) is None:
            raw = tokens[index]
            index += 1
        else:
            raise UsageError(
                f"{arg.flag} needs a value ({arg.metavar}). A value that starts with `--` is "
                f"written `{arg.flag}=VALUE`.",
                field=arg.flag,
                example=spec.example,
            )
        if not raw.strip():  # `--environment ""`: say so, not "`` is not valid"
            raise UsageError(
                f"{arg.flag} is empty; give {arg.metavar} after it.",
                field=arg.flag,
                example=spec.example,
            )
        if arg.kind == "input":
            _add_input(values, arg, raw, spec)
            continue
        if arg.name in values:
            raise UsageError(
                f"{arg.flag} is given twice; give it once.", field=arg.flag, example=spec.example
            )
        values[arg.name] = _convert(arg, raw, spec)
    if spec.path == "help":
        if positional:
            values["topic"] = " ".join(positional).lower()
        return values
    _assign_positional(spec, positional, values)
    _require(spec, values)
    return values


def _assign_positional(spec: Spec, positional: list[str], values: dict[str, Any]) -> None:
    expected = spec.positional
    if len(positional) > len(expected):
        extra = positional[len(expected)]
        hint = " Put text with spaces in quotes." if spec.flags else ""
        raise UsageError(
            f"Unexpected `{extra[:40]}` after `{spec.path}`.{hint}\nUsage: `{spec.usage()}`",
            field=extra[:40],
            example=spec.example,
        )
    for arg, raw in zip(expected, positional, strict=False):
        values[arg.name] = _convert(arg, raw, spec)


def _require(spec: Spec, values: dict[str, Any]) -> None:
    for arg in spec.args:
        if arg.required and arg.name not in values:
            what = arg.flag or arg.metavar
            raise UsageError(
                f"`{spec.path}` needs {what}"
                + (f" ({arg.help})" if arg.help else "")
                + f".\nUsage: `{spec.usage()}`",
                field=what,
                example=spec.example,
            )


def parse_command(text: str) -> AnyCommand:
    """Parse one `/aml` line. Raises `UserError` (never anything else) for bad input.

    Secrets are looked for before anything else, on the raw text and at any length, so
    that the caller learns the text must not be stored or logged whatever else is wrong.
    """
    kind = find_secret(text)
    if kind is not None:
        raise secret_refusal(kind)
    if len(text) > MAX_LENGTH:
        raise UsageError(
            f"The command is {len(text)} characters long; the limit is {MAX_LENGTH}.",
            field="command",
            example="/aml help",
        )
    tokens = tokenize(text)
    if tokens and tokens[0].lower() in {"/aml", "aml"}:
        tokens = tokens[1:]
    if not tokens:
        return Help()
    spec, rest = _find_spec(tokens)
    values = _parse_args(spec, rest)
    char = first_unstorable(text)
    if char is not None:  # outside any value: in a verb, a flag or a help topic
        raise UsageError(
            unstorable_message("The command", char), field="command", example=spec.example
        )
    try:
        return spec.model.model_validate(values)  # type: ignore[return-value]
    except ValidationError as exc:
        # The checks above mirror the models' constraints; this is the net beneath them.
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "command"
        arg = next((a for a in spec.args if a.name == field), None)
        label = (arg.flag or arg.metavar) if arg else field
        message = error["msg"].removeprefix("Value error, ")
        raise UsageError(f"{label}: {message}.", field=label, example=spec.example) from None
