"""Secrets pasted into chat are refused by kind, before anything else, and never echoed."""

from __future__ import annotations

import pytest

from commands.parser import parse_command
from shared.errors import SecretRefusedError, secret_refusal
from shared.secrets import find_secret

ACCOUNT_KEY = "Zm9vYmFy" * 10 + "Zm9vYm" + "=="  # 86 base64 characters and "=="
SAS_QUERY = "sv=2022-11-02&ss=b&srt=co&sp=rl&se=2030-01-01T00:00:00Z&sig=kX3%2Bq9Zr0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456%3D"

SECRETS: list[tuple[str, str]] = [
    ("a storage account key", ACCOUNT_KEY),
    (
        "a connection string with AccountKey=",
        f"DefaultEndpointsProtocol=https;AccountName=contosodata;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net",
    ),
    ("a connection string with AccountKey=", "AccountKey=abc"),
    (
        "a connection string with SharedAccessSignature=",
        f"BlobEndpoint=https://contosodata.blob.core.windows.net/;SharedAccessSignature={SAS_QUERY}",
    ),
    ("a SAS token", f"https://contosodata.blob.core.windows.net/training?{SAS_QUERY}"),
    ("a SAS token", f"?{SAS_QUERY}"),
    ("a SAS token", "sig=" + "A" * 43 + "%3D"),
    ("a Slack token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("a Slack token", "xoxp-123456789012-123456789012-abcdef"),
    ("a Slack token", "xapp-1-A0123456789-1234567890123-abcdef0123456789"),
    (
        "a Slack webhook URL",
        "https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    ("a private key", "-----BEGIN RSA PRIVATE KEY-----"),
    ("a private key", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ("a private key", "-----BEGIN PRIVATE KEY-----"),
    ("a JWT/bearer token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"),
    ("a JWT/bearer token", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0In0."),
    ("a JWT/bearer token", "Authorization: Bearer 0a1b2c3d4e5f6a7b8c9d0e1f"),
    ("a GitHub token", "ghp_" + "a1B2c3D4e5" * 4),
    ("a GitHub token", "github_pat_" + "a1B2c3D4e5" * 5),
    ("a client secret", "Abc8Q~dEfGhIjKlMnOpQrStUvWxYz012345678-_"),
    ("a client secret", "~bc7Q~dEfGhIjKlMnOpQrStUvWxYz012345678.~"),
    ("a password in a URL", "https://alice:hunter22@github.com/contoso/bert.git"),
    ("a password", "password=hunter22"),
    ("a password", "Server=db;Uid=ml;Pwd=hunter22;"),
    ("a password", "--password hunter22"),
]


@pytest.mark.parametrize(("kind", "secret"), SECRETS, ids=[f"{k}:{s[:12]}" for k, s in SECRETS])
def test_each_kind_of_secret_is_found_and_named(kind: str, secret: str) -> None:
    assert find_secret(f"datastore register d1 --description '{secret}'") == kind


@pytest.mark.parametrize(("kind", "secret"), SECRETS, ids=[f"{k}:{s[:12]}" for k, s in SECRETS])
def test_a_command_holding_a_secret_is_refused_without_echoing_it(kind: str, secret: str) -> None:
    with pytest.raises(SecretRefusedError) as caught:
        parse_command(
            f"datastore register d1 --kind blob --account acct1 --container c01 --description '{secret}'"
        )
    message = caught.value.render()
    assert kind in message
    assert secret not in message
    assert "d1" not in message and "acct1" not in message


def test_the_refusal_says_nothing_was_kept_and_points_to_identity_based_access() -> None:
    message = secret_refusal("a SAS token").render()
    assert "not stored, logged or audited" in message
    assert "did not process it" in message
    assert (
        "`/aml datastore register NAME --kind blob --account ACCOUNT --container NAME`" in message
    )
    assert "managed identity" in message and "Entra ID" in message
    assert "Key Vault" in message and "team lead" in message


def test_a_secret_is_refused_even_when_the_rest_of_the_command_is_wrong() -> None:
    with pytest.raises(SecretRefusedError):
        parse_command(f"frobnicate --nope '{ACCOUNT_KEY}")


def test_a_secret_is_refused_even_in_an_overlong_message() -> None:
    with pytest.raises(SecretRefusedError):
        parse_command("-----BEGIN RSA PRIVATE KEY-----\n" + "QUJD" * 1000)


def test_a_signed_input_uri_is_refused_however_short_its_signature() -> None:
    with pytest.raises(SecretRefusedError):
        parse_command(
            "job submit --compute c1 --environment e@latest --command x "
            "--input d=https://contosodata.blob.core.windows.net/training/a.csv?sig=abc"
        )


def test_a_git_url_with_a_password_is_refused_as_code() -> None:
    with pytest.raises(SecretRefusedError):
        parse_command(
            "job submit --compute c1 --environment e@latest --command x "
            "--code https://alice:hunter22@github.com/contoso/bert.git"
        )


ORDINARY = [
    'job submit --compute c1 --environment e@latest --command "python train.py --lr 0.01 --epochs 3"',
    "job submit --compute c1 --environment e@latest --command x "
    "--input d=azureml://datastores/workspaceblobstore/paths/a/b.csv",
    "job submit --compute c1 --environment e@latest --command x "
    "--input d=abfss://raw@contosodata.dfs.core.windows.net/clicks/2024/",
    "job submit --compute c1 --environment e@latest --command x "
    "--input d=https://contosodata.blob.core.windows.net/training/data.csv",
    "job submit --compute c1 --environment mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04@sha256:"
    "0f3a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a0f3a1b9c8d7e6f5a4b3c2d1e --command x",
    "job submit --compute c1 --environment e@latest --code azureml:bert-train:3 --command x",
    'job submit --compute c1 --environment e@latest --command "python x.py --password $DB_PASSWORD"',
    'job submit --compute c1 --environment e@latest --command "python x.py --password-file /mnt/pw"',
    'job submit --compute c1 --environment e@latest --command "python sweep.py sv=1 sig=2"',
    "job submit --compute c1 --environment azureml:AzureML-sklearn-1.5@latest --command x "
    "--input d=azureml://datastores/workspaceblobstore/paths/"
    "UI/2024-01-01_000000_UTC/training_data_with_a_rather_long_folder_name/part-00000.parquet",
    "job submit --compute c1 --environment e@latest --command x "
    "--code https://contosodata.blob.core.windows.net/code/bert/ --input d=azureml:clicks:3",
    "job status amlbot-12-3f2a1b9c",
    "job watch 0f3a1b9c-8d7e-6f5a-4b3c-2d1e0f9a8b7c",
    'deny 3 --reason "commit 3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a is old"',
    'deny 3 --reason "the password: rotate it in the vault, not here"',
    'deny 3 --reason "the Bearer of bad news is the budget"',
    'deny 3 --reason "reset my password because it expired"',
    'access request gpu-cluster --for 4h --reason "fine-tune BERT on eyJ-style logs"',
    'datastore register trainingdata --kind blob --account contosodata --container training --description "identity-based, no AccountKey needed"',
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_commands_are_not_mistaken_for_secrets(text: str) -> None:
    assert find_secret(text) is None
    parse_command(text)


@pytest.mark.parametrize(
    "where",
    [
        "d=azureml://datastores/x/paths/{}",
        "d=azureml://datastores/x/paths/{}/part-0.csv",
        "d=https://contosodata.blob.core.windows.net/training/{}",
    ],
)
def test_a_storage_key_inside_a_path_is_found(where: str) -> None:
    text = f"job submit --compute c1 --environment e@latest --command x --input {where}"
    assert find_secret(text.format(ACCOUNT_KEY)) == "a storage account key"
    with pytest.raises(SecretRefusedError):
        parse_command(text.format(ACCOUNT_KEY))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "a private key"),
        ("DefaultEndpointsProtocol=https;ACCOUNTKEY=abc", "a connection string with AccountKey="),
        ("Endpoint=sb://x/;SharedAccessKey=abc", "a connection string with SharedAccessKey="),
        (
            "BlobEndpoint=https://a;SHAREDACCESSSIGNATURE=sv=2022",
            "a connection string with SharedAccessSignature=",
        ),
        ("?SV=2022-11-02&SIG=" + "A" * 44, "a SAS token"),
        ("xoxb-" + "1" * 12, "a Slack token"),
        ("xapp-1-" + "A" * 12, "a Slack token"),
        ("https://hooks.slack.com/services/T000/B000/XXXXXXXX", "a Slack webhook URL"),
        ("ghs_" + "a" * 36, "a GitHub token"),
        ("github_pat_" + "a" * 40, "a GitHub token"),
        ("eyJhbGciOiJI.eyJzdWIiOiIx.sig", "a JWT/bearer token"),
        ("Bearer abcdefghij0123456789xyz", "a JWT/bearer token"),
        ("A" * 86 + "==", "a storage account key"),
        ("abc8Q~" + "a" * 32, "a client secret"),
        ("postgres://me:hunter22@db", "a password in a URL"),
        ("PWD=hunter22", "a password"),
    ],
)
def test_every_kind_gets_past_the_quick_test_that_spares_plain_text(text: str, kind: str) -> None:
    # find_secret first looks for a literal each detector needs; a kind it skipped by
    # mistake would go unrefused.
    assert find_secret(text) == kind
