"""The `/aml` grammar: every command parses into its model, shell quoting as people type it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from commands import models as m
from commands.grammar import SPECS, Spec
from commands.parser import parse_command

ENV = "azureml:AzureML-sklearn-1.5@latest"

EVERY_COMMAND: list[tuple[str, m.Command]] = [
    ("help", m.Help()),
    ("help job submit", m.Help(topic="job submit")),
    ("whoami", m.WhoAmI()),
    ("compute list", m.ComputeList()),
    (
        'access request gpu-cluster --for 2h --reason "fine-tune BERT"',
        m.AccessRequest(
            cluster="gpu-cluster", duration=timedelta(hours=2), reason="fine-tune BERT"
        ),
    ),
    (
        'access request gpu-cluster --reason "fine-tune BERT"',
        m.AccessRequest(cluster="gpu-cluster", reason="fine-tune BERT"),
    ),
    ("access list", m.AccessList()),
    ("access revoke 3", m.AccessRevoke(grant_id=3)),
    (
        "datastore register trainingdata --kind adls-gen2 --account contosodata "
        '--container training --description "raw click logs"',
        m.DatastoreRegister(
            name="trainingdata",
            store_kind="adls-gen2",
            account="contosodata",
            container="training",
            description="raw click logs",
        ),
    ),
    ("datastore list", m.DatastoreList()),
    (
        f'job submit --compute gpu-cluster --environment {ENV} --command "python train.py" '
        "--code azureml:bert-train:3 --input train=azureml://datastores/workspaceblobstore/paths/bert/ "
        "--input test=azureml:bert-test:2 --instances 2 --experiment bert --name first-try",
        m.JobSubmit(
            compute="gpu-cluster",
            environment="AzureML-sklearn-1.5@latest",
            command="python train.py",
            code="azureml:bert-train:3",
            inputs={
                "train": "azureml://datastores/workspaceblobstore/paths/bert/",
                "test": "azureml:bert-test:2",
            },
            instances=2,
            experiment="bert",
            name="first-try",
        ),
    ),
    (
        f'job submit --compute gpu-cluster --environment {ENV} --command "python train.py"',
        m.JobSubmit(
            compute="gpu-cluster",
            environment="AzureML-sklearn-1.5@latest",
            command="python train.py",
        ),
    ),
    ("job status amlbot-7-1a2b3c4d", m.JobStatusQuery(job="amlbot-7-1a2b3c4d")),
    ("job list", m.JobList()),
    ("job list --mine", m.JobList(mine=True)),
    ("job cancel amlbot-7-1a2b3c4d", m.JobCancel(job="amlbot-7-1a2b3c4d")),
    ("job watch my-job-42", m.JobWatch(job="my-job-42")),
    ("job unwatch my-job-42", m.JobUnwatch(job="my-job-42")),
    ("request list", m.RequestList()),
    ("request show 7", m.RequestShow(request_id=7)),
    ("request cancel 7", m.RequestCancel(request_id=7)),
    ("approve 7", m.Approve(request_id=7)),
    (
        'deny 7 --reason "use the shared lake instead"',
        m.Deny(request_id=7, reason="use the shared lake instead"),
    ),
    ("audit", m.Audit()),
    ("audit --since 7d", m.Audit(since=timedelta(days=7))),
    ("idle", m.IdleReport()),
    ("drift check", m.DriftCheck()),
    ("drift fix 4", m.DriftFix(finding_id=4)),
    (
        'access request gpu-cluster --until-done --for 8h --reason "fine-tune"',
        m.AccessRequest(
            cluster="gpu-cluster", duration=timedelta(hours=8), reason="fine-tune", until_done=True
        ),
    ),
    (
        'access request gpu-cluster --emergency --reason "prod is down"',
        m.AccessRequest(cluster="gpu-cluster", reason="prod is down", emergency=True),
    ),
]


@pytest.mark.parametrize(("text", "expected"), EVERY_COMMAND, ids=[t for t, _ in EVERY_COMMAND])
def test_each_command_parses_into_its_model(text: str, expected: m.Command) -> None:
    assert parse_command(text) == expected


def test_the_table_above_covers_every_command_in_the_grammar() -> None:
    covered = {type(model) for _, model in EVERY_COMMAND}
    assert covered == {spec.model for spec in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.path)
def test_every_documented_example_parses_into_its_model(spec: Spec) -> None:
    assert isinstance(parse_command(spec.example), spec.model)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.path)
def test_every_command_accepts_a_workspace(spec: Spec) -> None:
    command = parse_command(f"{spec.example} --workspace prod")
    assert command.workspace == "prod"


def test_the_leading_slash_aml_is_optional() -> None:
    assert parse_command("/aml approve 7") == parse_command("approve 7") == m.Approve(request_id=7)


@pytest.mark.parametrize("text", ["", "   ", "/aml", "/aml   "])
def test_empty_text_is_the_help_overview(text: str) -> None:
    assert parse_command(text) == m.Help()


def test_verbs_and_flags_ignore_case() -> None:
    assert parse_command("Job List --MINE") == m.JobList(mine=True)


def test_a_flag_value_may_follow_an_equals_sign() -> None:
    assert parse_command("access list --workspace=demo") == m.AccessList(workspace="demo")


def test_a_value_starting_with_dashes_is_given_after_an_equals_sign() -> None:
    command = parse_command(f"job submit --compute c1 --environment {ENV} --command=--version")
    assert isinstance(command, m.JobSubmit) and command.command == "--version"


def test_flags_may_come_before_the_positional_argument() -> None:
    command = parse_command("access request --reason 'fine-tune BERT' gpu-cluster")
    assert command == m.AccessRequest(cluster="gpu-cluster", reason="fine-tune BERT")


@pytest.mark.parametrize("text", ["approve #12", "approve 12"])
def test_request_ids_are_written_with_or_without_a_hash(text: str) -> None:
    assert parse_command(text) == m.Approve(request_id=12)


def test_grant_ids_are_written_with_a_hash_too() -> None:
    assert parse_command("access revoke #4") == m.AccessRevoke(grant_id=4)


def test_the_job_command_keeps_its_own_flags_and_quotes() -> None:
    command = parse_command(
        f"job submit --compute c1 --environment {ENV} "
        "--command 'python train.py --lr 0.01 --note \"two words\"'"
    )
    assert isinstance(command, m.JobSubmit)
    assert command.command == 'python train.py --lr 0.01 --note "two words"'


def test_single_quotes_group_words_like_double_quotes() -> None:
    assert parse_command("deny 3 --reason 'use the lake'") == m.Deny(
        request_id=3, reason="use the lake"
    )


def test_curly_double_quotes_from_phones_are_straightened() -> None:
    command = parse_command("deny 3 --reason \u201cuse the lake\u201d")
    assert command == m.Deny(request_id=3, reason="use the lake")


def test_curly_single_quotes_from_phones_are_straightened() -> None:
    command = parse_command("deny 3 --reason \u2018use the lake\u2019")
    assert command == m.Deny(request_id=3, reason="use the lake")


def test_a_curly_apostrophe_inside_quotes_is_kept_as_an_apostrophe() -> None:
    command = parse_command("deny 3 --reason \u201cit\u2019s too big\u201d")
    assert command == m.Deny(request_id=3, reason="it's too big")


def test_a_lone_curly_apostrophe_stays_a_letter() -> None:
    command = parse_command("deny 3 --reason it\u2019s-too-big")
    assert command == m.Deny(request_id=3, reason="it\u2019s-too-big")


@pytest.mark.parametrize("dash", ["\u2014", "\u2013"])
def test_a_dash_that_a_phone_made_typographic_still_starts_a_flag(dash: str) -> None:
    assert parse_command(f"job list {dash}mine") == m.JobList(mine=True)


def test_a_typographic_dash_inside_a_value_is_text() -> None:
    command = parse_command("deny 3 --reason 'too big \u2014 ask for less'")
    assert command == m.Deny(request_id=3, reason="too big \u2014 ask for less")


def test_free_text_is_trimmed() -> None:
    assert parse_command("deny 3 --reason '  too big  '") == m.Deny(request_id=3, reason="too big")


def test_the_help_topic_is_every_word_after_help() -> None:
    assert parse_command("/aml help Job Submit") == m.Help(topic="job submit")
