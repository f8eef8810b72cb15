"""Azure's naming rules and URI forms, checked before anything reaches Azure."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from commands import validation as v
from shared.errors import SecretRefusedError, UsageError

Check = Callable[[str, str], str]

RULES: list[tuple[Check, list[str], list[str]]] = [
    (
        v.compute_name,
        ["gpu-cluster", "c1", "A" * 16, "cpuCluster2"],
        ["c", "A" * 17, "1gpu", "gpu-", "-gpu", "gpu_cluster", "gpu cluster"],
    ),
    (
        v.datastore_name,
        ["trainingdata", "training_data_2", "_staging", "a" * 255],
        ["my-store", "2data", "a" * 256, "data.lake", ""],
    ),
    (
        v.storage_account,
        ["contosodata", "abc", "a1" * 12],
        ["ab", "Contosodata", "contoso-data", "a" * 25],
    ),
    (
        v.container_name,
        ["training", "a-b-c", "abc", "1data", "a" * 63],
        ["ab", "a--b", "-abc", "abc-", "Training", "a" * 64, "a_b"],
    ),
    (
        v.job_name,
        ["amlbot-7-1a2b3c4d", "frank_lime_6cl8tqyf4c", "0f3a1b9c-8d7e", "a" * 255],
        ["-x", "_x", "a b", "a" * 256, "a.b"],
    ),
    (
        v.experiment_name,
        ["bert-finetune", "exp_2", "2024-sweep"],
        ["-bert", "bert tuning", "a" * 256],
    ),
    (v.input_name, ["training_data", "_x", "Data2"], ["1data", "my-data", "a b"]),
    (v.workspace_name, ["demo", "team-a_prod"], ["-demo", "two words", "a" * 65]),
]


@pytest.mark.parametrize(
    ("check", "good"),
    [(check, name) for check, goods, _ in RULES for name in goods],
    ids=lambda x: getattr(x, "__qualname__", str(x)[:20]),
)
def test_names_following_azure_rules_are_accepted(check: Check, good: str) -> None:
    assert check(good, "field") == good


@pytest.mark.parametrize(
    ("check", "bad"),
    [(check, name) for check, _, bads in RULES for name in bads],
    ids=lambda x: getattr(x, "__qualname__", str(x)[:20]),
)
def test_names_breaking_azure_rules_name_the_field_and_show_an_example(
    check: Check, bad: str
) -> None:
    with pytest.raises(UsageError) as caught:
        check(bad, "--field")
    assert caught.value.field == "--field"
    assert caught.value.example and caught.value.example.startswith("--field ")
    assert "is not valid:" in caught.value.message


@pytest.mark.parametrize(
    "uri",
    [
        "azureml://datastores/workspaceblobstore/paths/bert/train.csv",
        "azureml://datastores/workspaceblobstore/paths/bert/",
        "https://contosodata.blob.core.windows.net/training/data.csv",
        "abfss://raw@contosodata.dfs.core.windows.net/clicks/2024/",
        "wasbs://training@contosodata.blob.core.windows.net/data.csv",
        "azureml:bert-train:3",
        "azureml:bert-train@latest",
    ],
)
def test_data_uris_of_the_documented_forms_are_accepted(uri: str) -> None:
    assert v.data_uri(uri, "--input train") == uri


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://contoso/data.csv",
        "http://contosodata.blob.core.windows.net/training/data.csv",
        "azureml://datastores/my-store/paths/x",
        "abfss://raw@Contoso_Data.dfs.core.windows.net/x",
        "azureml:bert-train",
    ],
)
def test_other_uris_are_refused_with_the_forms_listed(uri: str) -> None:
    with pytest.raises(UsageError) as caught:
        v.data_uri(uri, "--input train")
    assert caught.value.field == "--input train"
    assert "azureml://datastores/<datastore>/paths/<path>" in caught.value.message


@pytest.mark.parametrize(
    "path", ["./data", "data/train.csv", "/home/alice/data", "C:\\data", "file:///tmp/x"]
)
def test_a_local_data_path_is_refused_because_the_bot_uploads_nothing(path: str) -> None:
    with pytest.raises(UsageError) as caught:
        v.data_uri(path, "--input train")
    assert "local path" in caught.value.message
    assert "does not upload files" in caught.value.message
    assert "az ml data create" in caught.value.message


@pytest.mark.parametrize(
    "uri",
    [
        "https://contosodata.blob.core.windows.net/training/a.csv?sig=abc",
        "https://contosodata.blob.core.windows.net/training/a.csv?sp=r&SIG=abc",
        "wasbs://training@contosodata.blob.core.windows.net/a.csv?sv=2022-11-02&sig=x",
    ],
)
def test_a_signed_uri_is_refused_as_a_secret(uri: str) -> None:
    with pytest.raises(SecretRefusedError) as caught:
        v.data_uri(uri, "--input train")
    assert "a SAS token" in caught.value.message
    assert "contosodata" not in caught.value.message


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("azureml:AzureML-sklearn-1.5@latest", "AzureML-sklearn-1.5@latest"),
        ("AzureML-sklearn-1.5@latest", "AzureML-sklearn-1.5@latest"),
        ("azureml:my-env:3", "azureml:my-env:3"),
        ("my-env:3", "azureml:my-env:3"),
        (
            "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
            "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
        ),
        ("contoso.azurecr.io/train/bert:2024-05", "contoso.azurecr.io/train/bert:2024-05"),
    ],
)
def test_environments_are_normalised(given: str, normalised: str) -> None:
    assert v.environment(given) == normalised


@pytest.mark.parametrize("bad", ["not an env", "azureml:my-env", "my-env", "./env", "conda.yml"])
def test_other_environments_name_the_forms(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        v.environment(bad)
    assert caught.value.field == "--environment"
    assert "azureml:NAME@latest" in caught.value.message
    assert caught.value.example == "--environment azureml:AzureML-sklearn-1.5@latest"


@pytest.mark.parametrize(
    "code",
    ["azureml:bert-train:3", "https://contosodata.blob.core.windows.net/code/bert/"],
)
def test_code_is_a_registered_asset_or_a_storage_folder(code: str) -> None:
    assert v.code_reference(code) == code


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/contoso/bert",
        "git+https://dev.azure.com/c/p/_git/r",
        "https://dev.azure.com/c/p/_git/r",
        "https://git.contoso.com/ml/bert.git",
        "git@github.com:contoso/bert.git",
    ],
)
def test_git_urls_are_refused_with_what_is_taken_instead(url: str) -> None:
    """azure-ai-ml takes no git repository as a command job's code, so the parser says so
    at once, instead of the request failing in Azure after a lead approved it."""
    with pytest.raises(UsageError) as caught:
        v.code_reference(url)
    assert caught.value.field == "--code"
    assert "cannot take their code from git" in caught.value.message
    assert "azureml:NAME:VERSION" in caught.value.message
    assert caught.value.example == "--code azureml:bert-train:3"


def test_help_for_job_submit_promises_no_git_url() -> None:
    from commands.help import help_text

    text = help_text("job submit")
    assert "--code" in text and "a git URL" not in text and "(not git)" in text


@pytest.mark.parametrize("path", ["./src", "src", "/home/alice/src", "C:\\src", "file:///src"])
def test_local_code_is_refused_because_the_bot_uploads_nothing(path: str) -> None:
    with pytest.raises(UsageError) as caught:
        v.code_reference(path)
    assert caught.value.field == "--code"
    assert "local path" in caught.value.message
    assert "does not upload files" in caught.value.message


def test_other_code_references_name_the_accepted_forms() -> None:
    with pytest.raises(UsageError) as caught:
        v.code_reference("s3://bucket/src")
    assert "azureml:NAME:VERSION" in caught.value.message
    assert "never uploads local files" in caught.value.message
