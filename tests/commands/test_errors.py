"""Bad input gets a message that names the field, says what is allowed and shows an example."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from commands import models as m
from commands.parser import parse_command
from shared.errors import UsageError

ENV = "azureml:AzureML-sklearn-1.5@latest"
JOB = f"job submit --compute c1 --environment {ENV} --command x"
STORE = "datastore register d1 --kind blob --account acct1 --container c01"


def usage_error(text: str) -> UsageError:
    with pytest.raises(UsageError) as caught:
        parse_command(text)
    assert caught.value.example, "every error shows an example"
    return caught.value


def test_unknown_command_suggests_the_closest() -> None:
    error = usage_error("acess list")
    assert "Did you mean `access`?" in error.message
    assert error.field == "command"


def test_unknown_command_lists_every_command() -> None:
    message = usage_error("frobnicate").message
    for verb in ("access", "approve", "audit", "datastore", "deny", "job", "request"):
        assert verb in message


def test_unknown_subcommand_suggests_the_closest_and_lists_the_allowed_ones() -> None:
    message = usage_error("job lsit").message
    assert "Did you mean `list`?" in message
    assert "submit, status, list, cancel, watch, unwatch" in message


def test_a_verb_without_its_subcommand_lists_them() -> None:
    assert "needs a subcommand: request, list, revoke" in usage_error("access").message


def test_unknown_flag_suggests_the_closest() -> None:
    error = usage_error("access request gpu-cluster --reson xyz")
    assert "Did you mean `--reason`?" in error.message
    assert error.field == "--reson"
    assert error.example and error.example.startswith("/aml access request")


def test_unknown_flag_lists_the_allowed_flags() -> None:
    message = usage_error("job list --all").message
    assert "--mine" in message and "--workspace" in message


def test_a_flag_with_one_dash_is_pointed_at_the_two_dash_form() -> None:
    error = usage_error("job list -mine")
    assert "`--mine`" in error.message


def test_missing_required_flag_names_it_and_shows_usage() -> None:
    error = usage_error("access request gpu-cluster")
    assert error.field == "--reason"
    assert "Usage: `/aml access request CLUSTER" in error.render()
    assert "Example: `/aml access request gpu-cluster" in error.render()


def test_missing_positional_argument_is_named() -> None:
    assert usage_error("approve").field == "ID"


@pytest.mark.parametrize("flag", ["--compute", "--environment", "--command"])
def test_each_required_job_flag_is_named_when_missing(flag: str) -> None:
    given = {"--compute": "c1", "--environment": ENV, "--command": "x"}
    text = "job submit " + " ".join(f"{f} {v}" for f, v in given.items() if f != flag)
    assert usage_error(text).field == flag


def test_a_flag_without_its_value_is_named() -> None:
    error = usage_error("access request gpu-cluster --reason xyz --for")
    assert error.field == "--for"
    assert "needs a value" in error.message


def test_a_flag_followed_by_another_flag_has_no_value() -> None:
    assert usage_error("access request gpu-cluster --for --reason xyz").field == "--for"


def test_a_switch_refuses_a_value() -> None:
    error = usage_error("job list --mine=yes")
    assert error.field == "--mine"
    assert "takes no value" in error.message


def test_a_flag_given_twice_is_refused() -> None:
    error = usage_error("access request c1 --for 1h --for 2h --reason xyz")
    assert error.field == "--for"
    assert "given twice" in error.message


def test_the_same_input_name_twice_is_refused() -> None:
    error = usage_error(f"{JOB} --input a=azureml:x:1 --input a=azureml:y:1")
    assert error.field == "--input"


def test_an_input_without_a_name_shows_the_form() -> None:
    error = usage_error(f"{JOB} --input azureml:x:1")
    assert error.field == "--input"
    assert "NAME=URI" in error.message


def test_a_stray_word_suggests_quotes() -> None:
    error = usage_error("access request c1 --reason fine tune")
    assert error.field == "tune"
    assert "quotes" in error.message


def test_an_argument_to_a_command_that_takes_none_is_refused() -> None:
    assert usage_error("whoami alice").field == "alice"


def test_a_text_too_short_says_how_long_it_is_in_words_that_agree() -> None:
    error = usage_error("access request c1 --for 1h --reason x")
    assert error.field == "--reason"
    assert error.message.startswith("--reason is 1 character long; give 3 to 500 characters.")


def test_an_unbalanced_quote_is_explained() -> None:
    error = usage_error('deny 3 --reason "oops')
    assert error.field == "quoting"
    assert "unbalanced quote" in error.message


@pytest.mark.parametrize(
    ("text", "field", "allowed"),
    [
        ("access request -bad --reason xyz", "CLUSTER", "starting with a letter"),
        ("access request a-cluster-name-too-long --reason xyz", "CLUSTER", "2-16 characters"),
        ("access request gpu- --reason xyz", "CLUSTER", "not ending with a hyphen"),
        ("access request c1 --for soon --reason xyz", "--for", "90m, 4h, 2d"),
        ("access request c1 --for 0h --reason xyz", "--for", "longer than zero"),
        (
            "datastore register my-store --kind blob --account acct1 --container c01",
            "NAME",
            "underscores",
        ),
        (
            "datastore register d1 --kind s3 --account acct1 --container c01",
            "--kind",
            "blob, adls-gen2, file",
        ),
        (
            "datastore register d1 --kind blob --account Bad_Account --container c01",
            "--account",
            "3-24 lowercase",
        ),
        (
            "datastore register d1 --kind blob --account acct1 --container a--b",
            "--container",
            "single hyphens",
        ),
        (f"{JOB} --instances 0", "--instances", "1 to 100"),
        (f"{JOB} --instances 101", "--instances", "1 to 100"),
        (f"{JOB} --instances two", "--instances", "1 to 100"),
        (f"{JOB} --input x=ftp://a", "--input x", "azureml://datastores/"),
        (f"{JOB} --input 2x=azureml:x:1", "--input name", "not starting with a digit"),
        (f"{JOB} --code ./src", "--code", "does not upload files"),
        (f"{JOB} --experiment 'bert tuning'", "--experiment", "letters, digits"),
        (f"{JOB} --name 'my job'", "--name", "letters, digits"),
        (
            "job submit --compute c1 --environment 'not an env' --command x",
            "--environment",
            "azureml:NAME@latest",
        ),
        ("job status -x", "JOB", "letters, digits"),
        ("approve seven", "ID", "like 7 or #7"),
        ("approve 0", "ID", "like 7 or #7"),
        ("approve ##7", "ID", "like 7 or #7"),
        ("request show 7.5", "ID", "like 7 or #7"),
        ("audit --since forever", "--since", "90m, 4h, 2d"),
        ("access list --workspace 'two words'", "--workspace", "letters, digits"),
    ],
)
def test_a_bad_value_names_its_field_and_what_is_allowed(
    text: str, field: str, allowed: str
) -> None:
    error = usage_error(text)
    assert error.field == field
    assert allowed in error.message


def test_a_bad_datastore_kind_suggests_the_closest() -> None:
    assert "Did you mean `blob`?" in usage_error(STORE.replace("blob", "blobb")).message


@pytest.mark.parametrize("reason", ["ok", "  ok  ", "x" * 501])
def test_a_reason_must_be_3_to_500_characters(reason: str) -> None:
    error = usage_error(f"deny 3 --reason '{reason}'")
    assert error.field == "--reason"
    assert "3 to 500 characters" in error.message


def test_a_reason_of_500_characters_is_accepted() -> None:
    parse_command(f"deny 3 --reason '{'x' * 500}'")


def test_the_job_command_may_be_2000_characters_and_no_more() -> None:
    parse_command(f"job submit --compute c1 --environment {ENV} --command '{'x' * 2000}'")
    error = usage_error(f"job submit --compute c1 --environment {ENV} --command '{'x' * 2001}'")
    assert error.field == "--command"
    assert "1 to 2000 characters" in error.message


def test_an_empty_job_command_is_refused() -> None:
    assert (
        usage_error(f"job submit --compute c1 --environment {ENV} --command ''").field
        == "--command"
    )


@pytest.mark.parametrize("flag", ["--environment", "--compute", "--max-duration", "--input"])
def test_an_empty_flag_value_is_named_as_empty(flag: str) -> None:
    given = {"--environment": ENV, "--compute": "c1", "--command": "x"}
    given[flag] = ""
    text = "job submit " + " ".join(f"{name} '{value}'" for name, value in given.items())
    error = usage_error(text)
    assert error.field == flag
    assert error.message.startswith(f"{flag} is empty; give ")


def test_an_overlong_message_is_refused_without_echoing_it() -> None:
    text = "deny 3 --reason " + "y" * 5000
    error = usage_error(text)
    assert error.field == "command"
    assert "y" * 50 not in error.render()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("access request gpu-cluster --for 99999999999w --reason 'fine-tune'", "--for"),
        ("audit --since 99999999999w", "--since"),
        ("audit --since 999999999d", "--since"),
        ("audit --since 521w", "--since"),
    ],
)
def test_a_duration_past_the_maximum_names_the_field_and_the_maximum(text: str, field: str) -> None:
    error = usage_error(text)
    assert error.field == field
    assert "at most 520w" in error.message


def test_the_longest_duration_is_accepted() -> None:
    parse_command("audit --since 520w")
    parse_command("audit --since 3640d")


def test_a_command_built_without_the_parser_refuses_a_control_character_too() -> None:
    with pytest.raises(ValidationError, match="control character"):
        m.Deny(request_id=1, reason="no\x00budget")


def test_a_control_character_outside_any_value_is_refused() -> None:
    error = usage_error("help job\x00")
    assert error.field == "command"
    assert "control character (U+0000)" in error.message


def test_a_control_character_in_a_value_names_its_flag() -> None:
    error = usage_error("deny 3 --reason 'no\x1bbudget'")
    assert error.field == "--reason"
    assert "control character (U+001B)" in error.message
