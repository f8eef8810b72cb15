"""Azure's naming rules and URI forms, checked before anything reaches Azure."""

from __future__ import annotations

import re
from collections.abc import Callable

from shared.errors import UsageError, secret_refusal
from shared.secrets import find_secret

Check = Callable[[str, str], str]  # (value, field) -> normalised value


def _rule(pattern: str, allowed: str, example: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: str, field: str) -> str:
        if not compiled.fullmatch(value):
            shown = f"{field} {example}" if field.startswith("--") else example
            raise UsageError(
                f"{field} `{value[:80]}` is not valid: {allowed}.", field=field, example=shown
            )
        return value

    return check


compute_name = _rule(
    r"[A-Za-z](?:[A-Za-z0-9-]{0,14}[A-Za-z0-9])",
    "2-16 characters, letters, digits and hyphens, starting with a letter and not ending "
    "with a hyphen",
    "gpu-cluster",
)
# Azure documents datastore names as "case insensitive, alphanumeric characters and
# underscores". A leading digit is kept out as well, the way `data_uri` below reads names in
# `azureml://datastores/<name>/...`, so every name registered here works as an input.
datastore_name = _rule(
    r"[A-Za-z_][A-Za-z0-9_]{0,254}",
    "letters, digits and underscores (no hyphens), not starting with a digit, up to 255",
    "trainingdata",
)
storage_account = _rule(
    r"[a-z0-9]{3,24}", "3-24 lowercase letters and digits (a storage account name)", "contosodata"
)
container_name = _rule(
    r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]",
    "3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit",
    "training",
)
# Azure's run-history rule for run ids (`^[a-zA-Z0-9][\w-]{0,255}$`): jobs the bot did not
# start, which `job watch` follows, may begin with a digit.
job_name = _rule(
    r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}",
    "1-255 letters, digits, `_` and `-`, starting with a letter or digit",
    "amlbot-7-1a2b3c4d",
)
experiment_name = _rule(
    r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}",
    "1-255 letters, digits, `_` and `-`, starting with a letter or digit",
    "bert-finetune",
)
# `${{inputs.NAME}}` in the job's command must resolve, so names are Python identifiers.
input_name = _rule(
    r"[A-Za-z_][A-Za-z0-9_]{0,254}",
    "a name of letters, digits and underscores, not starting with a digit",
    "training_data",
)
workspace_name = _rule(
    r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", "letters, digits, `_` and `-`, up to 64", "demo"
)

_DATA_URI_FORMS = (
    "`azureml://datastores/<datastore>/paths/<path>`, `https://<account>.blob.core.windows.net/"
    "<container>/<path>`, `abfss://<filesystem>@<account>.dfs.core.windows.net/<path>`, "
    "`wasbs://<container>@<account>.blob.core.windows.net/<path>`, `azureml:<asset>:<version>` "
    "or `azureml:<asset>@latest`"
)
_DATA_URI = re.compile(
    r"azureml://datastores/[A-Za-z_][A-Za-z0-9_]*/paths/\S*"
    r"|azureml://subscriptions/\S+"
    r"|https://[A-Za-z0-9.-]+(?::\d+)?/\S*"
    r"|abfss://[a-z0-9][a-z0-9-]*@[a-z0-9]{3,24}\.dfs\.core\.[a-z.]+/?\S*"
    r"|wasbs://[a-z0-9][a-z0-9-]*@[a-z0-9]{3,24}\.blob\.core\.[a-z.]+/?\S*"
    r"|azureml:[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+|@latest)"
)


_SAS_SIGNATURE = re.compile(r"[?&]sig=", re.IGNORECASE)
# A one-letter "scheme" is a Windows drive (`C:\\data`), so a scheme takes two letters or more.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def _is_local_path(value: str) -> bool:
    return value.lower().startswith("file:") or not _SCHEME.match(value)


def refuse_secrets(value: str, *, uri: bool = False) -> None:
    """Raise the secret refusal when `value` holds a secret. A URI with any `sig=` is a SAS,
    however short: a signed URL is a credential, and identity-based access needs none."""
    kind = find_secret(value)
    if kind is None and uri and _SAS_SIGNATURE.search(value):
        kind = "a SAS token"
    if kind is not None:
        raise secret_refusal(kind)


def data_uri(value: str, field: str) -> str:
    refuse_secrets(value, uri=True)
    if _is_local_path(value):
        raise UsageError(
            f"{field} `{value[:100]}` is a local path, and amlbot does not upload files: it runs "
            f"in its own place, not on your machine. Upload the data first "
            f"(`az ml data create --name NAME --version 1 --path {value[:60]} --type uri_folder`) "
            f"and give `azureml:NAME:1`, or point at storage with {_DATA_URI_FORMS}.",
            field=field,
            example="--input training_data=azureml://datastores/workspaceblobstore/paths/bert/",
        )
    if not _DATA_URI.fullmatch(value):
        raise UsageError(
            f"{field} `{value[:100]}` is not a data URI amlbot understands. Use {_DATA_URI_FORMS}.",
            field=field,
            example="--input training_data=azureml://datastores/workspaceblobstore/paths/bert/",
        )
    return value


def input_pair(value: str, field: str = "--input") -> tuple[str, str]:
    name, sep, uri = value.partition("=")
    if not sep or not name or not uri:
        raise UsageError(
            f"{field} takes NAME=URI, not `{value[:80]}`.",
            field=field,
            example="--input training_data=azureml://datastores/workspaceblobstore/paths/bert/",
        )
    return input_name(name, f"{field} name"), data_uri(uri, f"{field} {name}")


_IMAGE = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\.[a-z0-9-]+)+(?::\d+)?(?:/[a-z0-9._-]+)+(?::[A-Za-z0-9._-]{1,128}|@sha256:[0-9a-f]{64})?"
)
_ENV_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}"


def environment(value: str, field: str = "--environment") -> str:
    """Normalise to `NAME@latest`, `azureml:NAME:VERSION` or a registry image reference.

    azure-ai-ml keeps an `azureml:` prefix on `@latest` names in the URL and Azure answers
    404, so that form loses its prefix here.
    """
    refuse_secrets(value, uri=True)
    text = value.strip()
    bare = text.removeprefix("azureml:")
    if re.fullmatch(rf"{_ENV_NAME}@latest", bare):
        return bare
    if re.fullmatch(rf"{_ENV_NAME}:[A-Za-z0-9_.-]+", bare) and "/" not in bare:
        return f"azureml:{bare}"
    if _IMAGE.fullmatch(text):
        return text
    raise UsageError(
        f"{field} `{value[:80]}` is not an environment. Use a curated or registered one "
        f"(`azureml:NAME@latest`, `azureml:NAME:VERSION`) or a container image "
        f"(`mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest`).",
        field=field,
        example="--environment azureml:AzureML-sklearn-1.5@latest",
    )


# Hosts of git repositories: azure-ai-ml takes a command job's code from a local folder (which
# it uploads), a registered code asset or a storage URL, never from git.
_GIT_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "dev.azure.com", "visualstudio.com")
CODE_FORMS = (
    "a registered code asset (`azureml:NAME:VERSION`) or the `https://` URL of a storage "
    "folder holding the code (`https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH/`)"
)


def code_reference(value: str, field: str = "--code") -> str:
    """Registered code assets or storage URLs only: the bot never uploads files from its
    host, and azure-ai-ml cannot take a command job's code from git."""
    refuse_secrets(value, uri=True)
    if re.fullmatch(r"azureml:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+", value):
        return value
    if _is_git_url(value):
        raise UsageError(
            f"{field} `{value[:80]}` is a git repository, and Azure ML command jobs cannot "
            f"take their code from git. Give {CODE_FORMS}; a team lead can register a "
            f"checkout as a code asset (`az ml code create`).",
            field=field,
            example="--code azureml:bert-train:3",
        )
    if re.fullmatch(r"https://[A-Za-z0-9.-]+/\S+", value):
        return value
    if _is_local_path(value):
        raise UsageError(
            f"{field} `{value[:80]}` is a local path, and amlbot does not upload files: it runs "
            f"in its own place, not on your machine. Give {CODE_FORMS}.",
            field=field,
            example="--code azureml:bert-train:3",
        )
    raise UsageError(
        f"{field} `{value[:80]}` is not usable: give {CODE_FORMS}; amlbot never uploads "
        f"local files.",
        field=field,
        example="--code azureml:bert-train:3",
    )


def _is_git_url(value: str) -> bool:
    lowered = value.lower()
    if lowered.startswith(("git+", "git@", "git://", "ssh://")) or "/_git/" in lowered:
        return True
    if lowered.rstrip("/").endswith(".git"):
        return True
    found = re.match(r"https?://([^/:]+)", lowered)
    host = found.group(1) if found else ""
    return any(host == git or host.endswith("." + git) for git in _GIT_HOSTS)
