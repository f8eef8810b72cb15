"""2,000 random and malicious lines through the console, as `amlbot console` reads them,
on SQLite and on PostgreSQL: every line gets an answer, none a traceback or an error id."""

from __future__ import annotations

import io
import logging
import os
import random
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.console import Console
from bot.wiring import Core
from commands.grammar import SPECS, WORKSPACE_FLAG, Spec
from workspaces.clock import ManualClock

LINES = 2000
SEED = 20240917

PATHS = [spec.path for spec in SPECS]
FLAGS = sorted({a.flag for s in SPECS for a in s.args if a.flag} | {WORKSPACE_FLAG.flag or ""})
EXAMPLES = [spec.example for spec in SPECS]
ACTORS = ["@alice", "@bob", "@carol", "", "@nobody", "@", "@@", "@a.b-c", "@bob\u200b"]
HUGE = [
    "99999999999w",
    "999999999d",
    "9" * 40,
    "#" + "9" * 30,
    str(2**64),
    "1e309",
    "-1",
    "0",
    "#0",
    "-9223372036854775809",
    "1h" * 20,
    "9999999999999999999999s",
]
AWKWARD = [
    '"',
    "'",
    "\u201c",
    "\u2019",
    "\u2014",
    "--",
    "-",
    "=",
    "\\",
    "''",
    '""',
    "#",
    "@",
    "<!channel>",
    "&amp;",
    "`",
    "${{inputs.x}}",
    "%s%n",
    "\x00",
    "\x1b[31m",
    "\udcff",
    "\u202e",
    "\ufeff",
    "\U0001f600",
    "\r",
    "\t",
]
KNOWN = [
    "gpu-cluster",
    "cpu-cluster",
    "demo",
    "blob",
    "azureml:AzureML-sklearn-1.5@latest",
    "x=azureml://datastores/workspaceblobstore/paths/a/",
    "amlbot-2-1a2b3c4d",
    "trainingdata",
    "contosodata",
    "python train.py",
    "2h",
    "7d",
    "1",
    "2",
    "#3",
]


def random_text(rng: random.Random, most: int) -> str:
    """Any code points, biased towards the awkward ones: controls, surrogates, quotes."""
    alphabet = [
        lambda: chr(rng.randrange(0, 0x20)),
        lambda: chr(rng.randrange(0x7F, 0xA0)),
        lambda: chr(rng.randrange(0xD800, 0xE000)),
        lambda: chr(rng.randrange(0x20, 0x7F)),
        lambda: chr(rng.randrange(0xA0, 0x110000)),
        lambda: rng.choice(AWKWARD),
    ]
    return "".join(rng.choice(alphabet)() for _ in range(rng.randrange(0, most)))


def spoiled(rng: random.Random, word: str) -> str:
    """A plausible value with one to three awkward characters slipped in."""
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(word) + 1)
        word = word[:at] + rng.choice([rng.choice(AWKWARD), random_text(rng, 3)]) + word[at:]
    return word


def random_value(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(KNOWN)
    if roll < 0.4:
        return rng.choice(HUGE)
    if roll < 0.5:
        return rng.choice("x'\"a#") * rng.choice([600, 2100, 5000])
    if roll < 0.8:
        return spoiled(rng, rng.choice([*KNOWN, "fine-tune BERT", "no budget left"]))
    return random_text(rng, 20)


GOOD: dict[str, str] = {
    "text": "'fine-tune BERT'",
    "duration": "2h",
    "int": "2",
    "id": "1",
    "compute": "gpu-cluster",
    "datastore": "trainingdata",
    "account": "contosodata",
    "container": "training",
    "store_kind": "blob",
    "environment": "azureml:AzureML-sklearn-1.5@latest",
    "code": "azureml:code:1",
    "input": "x=azureml://datastores/workspaceblobstore/paths/a/",
    "job": "amlbot-2-1a2b3c4d",
    "experiment": "bert",
    "workspace": "demo",
}


def quoted(rng: random.Random, value: str) -> str:
    return shlex.quote(value) if rng.random() < 0.7 else value


def command_words(rng: random.Random, spec: Spec) -> list[str]:
    """The spec's own arguments, each good or (one time in three) hostile, in any order."""
    positional: list[str] = []
    flags: list[list[str]] = []
    for arg in (*spec.args, WORKSPACE_FLAG):
        if not arg.required and rng.random() < 0.5:
            continue
        hostile = rng.random() < 0.35
        value = quoted(rng, random_value(rng)) if hostile else GOOD.get(arg.kind, "x")
        if arg.flag is None:
            positional.append(value)
        elif arg.kind == "flag":
            flags.append([arg.flag] if not hostile else [f"{arg.flag}={value}"])
        elif rng.random() < 0.2:
            flags.append([f"{arg.flag}={value}"])
        else:
            flags.append([arg.flag, value])
    rng.shuffle(flags)
    if rng.random() < 0.15:
        flags.insert(rng.randrange(len(flags) + 1), [rng.choice(FLAGS), random_value(rng)])
    return [*positional, *(word for flag in flags for word in flag)]


def random_line(rng: random.Random) -> str:
    roll = rng.random()
    actor = rng.choice(ACTORS) if rng.random() < 0.15 else rng.choice(ACTORS[:3])
    if roll < 0.1:
        words = rng.choice(EXAMPLES).split(" ")
        at = rng.randrange(len(words) + 1)
        words[at:at] = [random_value(rng) for _ in range(rng.randrange(0, 3))]
        return f"{actor} {' '.join(words)}"
    if roll < 0.15:
        return actor + " " + random_text(rng, 80)
    if roll < 0.2:
        words = [rng.choice(PATHS), *(rng.choice(AWKWARD) for _ in range(rng.randrange(4)))]
        return f"{actor} /aml {' '.join(words)}"
    spec = rng.choice(SPECS)
    prefix = rng.choice(["/aml ", "aml ", "", "/AML "])
    return f"{actor} {prefix}{spec.path} {' '.join(command_words(rng, spec))}"


def real_traffic(rng: random.Random, index: int) -> str:
    """Commands that store what they are given, their free text spoiled half the time, so
    requests exist for ids to point at and awkward text reaches the tables."""

    def text(plain: str) -> str:
        return shlex.quote(spoiled(rng, plain) if rng.random() < 0.5 else plain)

    env = "azureml:AzureML-sklearn-1.5@latest"
    return rng.choice(
        [
            f"@alice /aml access request gpu-cluster --for {rng.choice(['2h', *HUGE])} "
            f"--reason {text('fine-tune BERT')}",
            f"@carol /aml access request cpu-cluster --reason {text('nightly eval')}",
            f"@alice /aml datastore register d{index} --kind blob --account acct1 "
            f"--container c01 --description {text('the lake')}",
            f"@bob /aml approve {rng.randrange(1, 30)}",
            f"@bob /aml deny {rng.randrange(1, 30)} --reason {text('not now')}",
            f"@carol /aml job submit --compute cpu-cluster --environment {env} "
            f"--command {text('python train.py')} --name {text('run')}",
            f"@alice /aml request cancel {rng.randrange(1, 30)}",
            f"@bob /aml audit --since {rng.choice(['7d', *HUGE])}",
        ]
    )


def hostile_lines(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [
        real_traffic(rng, index) if index % 5 == 0 else random_line(rng) for index in range(count)
    ]


def test_hostile_lines_are_generated_as_described() -> None:
    lines = hostile_lines(SEED, LINES)
    assert len(lines) == LINES
    text = "".join(lines)
    for awkward in ("\x00", "\udcff", "99999999999w", "x" * 2100, "\u201c"):
        assert awkward in text, awkward
    assert {path for path in PATHS if f" {path} " in text} == set(PATHS) - {""}


@pytest.mark.timeout(600)
def test_no_console_line_gives_a_traceback_or_an_internal_error(
    core: Core, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    console = Console(core, out)
    caplog.set_level(logging.WARNING)
    for index, line in enumerate(hostile_lines(SEED, LINES)):
        if index % 100 == 0:
            clock.advance(timedelta(minutes=97))  # let grants expire and sweeps run
        console.handle_line(line)
    transcript = out.getvalue()
    assert "error id" not in transcript, transcript[transcript.find("error id") - 2000 :][:2500]
    assert "Traceback" not in transcript
    failures = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]


def test_bytes_that_are_not_utf8_on_standard_input_are_refused_and_the_console_goes_on(
    tmp_path: Path,
) -> None:
    script = (
        b"@alice /aml access request gpu-cluster --reason 'fine\xfftune'\n"
        b"@alice /aml deny 1 --reason 'no\x00budget'\n"
        b"@alice /aml whoami\n"
    )
    env = {
        **os.environ,
        "AMLBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}",
        # As on a host with a UTF-8 locale: Python reads standard input strictly.
        "PYTHONIOENCODING": "utf-8:strict",
        "PYTHONUTF8": "0",
    }
    env.pop("AMLBOT_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "console"],
        input=script,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0 and "Traceback" not in out + err, err
    assert "--reason has an undecodable byte or half a surrogate pair (U+DCFF)" in out
    assert "--reason has a control character (U+0000)" in out
    assert "You are *alice*." in out
