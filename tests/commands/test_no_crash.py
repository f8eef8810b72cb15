"""No input crashes the parser: it returns a command model or raises a `UserError`."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from commands import models as m
from commands.grammar import SPECS, WORKSPACE_FLAG, Spec
from commands.parser import parse_command
from shared.errors import UserError

VERBS = [spec.path for spec in SPECS]
FLAGS = sorted(
    {arg.flag for spec in SPECS for arg in spec.args if arg.flag} | {WORKSPACE_FLAG.flag or ""}
)
AWKWARD = [
    "#1",
    "#",
    "7",
    "0",
    "2h",
    "'",
    '"',
    "\u201c",
    "\u2019",
    "\u2014",
    "=",
    "--",
    "-",
    "\\",
    "/aml",
]
VALUES = [
    "gpu-cluster",
    "azureml:x:1",
    "x=azureml://datastores/workspaceblobstore/paths/a/",
    "x=https://a.blob.core.windows.net/c/a?sig=abc",
    "blob",
    "e@latest",
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
    "'fine tune'",
]

TOKENS = st.one_of(
    st.sampled_from(VERBS),
    st.sampled_from(FLAGS),
    st.builds(lambda flag, value: f"{flag}={value}", st.sampled_from(FLAGS), st.text(max_size=12)),
    st.sampled_from(AWKWARD),
    st.sampled_from(VALUES),
    st.text(max_size=20),
)


def parses_or_refuses(text: str) -> None:
    try:
        result = parse_command(text)
    except UserError as error:
        assert error.render()
        return
    assert isinstance(result, m.Command)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_with_a_user_error(text: str) -> None:
    parses_or_refuses(text)


@settings(max_examples=600, deadline=None)
@given(st.lists(TOKENS, max_size=12))
def test_any_mix_of_real_verbs_flags_and_random_tokens_parses_or_is_refused(
    tokens: list[str],
) -> None:
    parses_or_refuses(" ".join(tokens))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SPECS), st.lists(TOKENS, max_size=4), st.integers(min_value=0, max_value=40))
def test_documented_examples_with_random_tokens_spliced_in_parse_or_are_refused(
    spec: Spec, extra: list[str], cut: int
) -> None:
    words = spec.example.split(" ")
    cut = min(cut, len(words))
    parses_or_refuses(" ".join([*words[:cut], *extra, *words[cut:]]))


def test_pathological_long_text_is_refused_quickly() -> None:
    for text in ("a." * 5000, "eyJ-" * 3000, "x://" * 3000, "A" * 20000, "sig=" * 4000):
        parses_or_refuses(text)
