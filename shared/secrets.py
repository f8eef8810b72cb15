"""Recognise secrets pasted into chat: they must not be stored, logged, audited or echoed.

Detection only, so every package may use it; the reply to a person is
`shared.errors.secret_refusal`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from pydantic import BaseModel

# The alphabet of Entra ID client secrets. They are bounded with lookarounds, not `\b`,
# because they may begin or end with `~`, `-` or `.`, where `\b` does not hold.
_TOKEN_CHARS = r"A-Za-z0-9_~.\-"

# Query parameters of a shared access signature. `sig=` alone may be anything; next to the
# version, expiry or permissions it is a SAS.
_SAS_PARAM = re.compile(r"(?:^|[?&;\s\"'])(sig|sv|se|sp)=([^&\s\"']*)", re.IGNORECASE)
# An HMAC-SHA256 in base64 is 44 characters (more when URL-encoded): that long, a signature
# is a SAS even on its own; a short `sig=` next to `sv=` is a script's own arguments.
_LONE_SIGNATURE_LENGTH = 40
_SIGNATURE_LENGTH = 16
# A value starting like `$DB_PASSWORD`, `%PASS%`, `{{secret}}` or `<password>` names a
# secret kept elsewhere, which is what we want people to do.
_NOT_A_REFERENCE = r"(?![$%{<])"


def _holds_sas(text: str) -> bool:
    longest: dict[str, int] = {}
    for match in _SAS_PARAM.finditer(text):
        name = match.group(1).lower()
        longest[name] = max(longest.get(name, 0), len(match.group(2)))
    signature = longest.get("sig", 0)
    if signature >= _LONE_SIGNATURE_LENGTH:
        return True
    return signature >= _SIGNATURE_LENGTH and bool(longest.keys() & {"sv", "se", "sp"})


def _pattern(regex: str, flags: int = 0) -> Callable[[str], object]:
    return re.compile(regex, flags).search


# Order matters: the first match names the secret, so the most specific description comes
# first (a connection string holds an account key and may hold a SAS).
_DETECTORS: tuple[tuple[str, Callable[[str], object]], ...] = (
    ("a private key", _pattern(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    ("a connection string with AccountKey=", _pattern(r"AccountKey\s*=", re.I)),
    (
        "a connection string with SharedAccessSignature=",
        _pattern(r"SharedAccessSignature\s*=", re.I),
    ),
    ("a connection string with SharedAccessKey=", _pattern(r"SharedAccessKey\s*=", re.I)),
    ("a SAS token", _holds_sas),
    ("a Slack token", _pattern(r"(?<![A-Za-z0-9])xox[abposre]-[A-Za-z0-9-]{10,}")),
    ("a Slack token", _pattern(r"(?<![A-Za-z0-9])xapp-\d-[A-Za-z0-9-]{10,}")),
    (
        "a Slack webhook URL",
        _pattern(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{8,}"),
    ),
    ("a GitHub token", _pattern(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}")),
    ("a GitHub token", _pattern(r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{30,}")),
    (
        "a JWT/bearer token",
        _pattern(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."),
    ),
    # A digit is required so prose like "the Bearer of bad news" never matches.
    (
        "a JWT/bearer token",
        _pattern(r"\bBearer\s+(?=[A-Za-z._~+/-]*\d)[A-Za-z0-9._~+/-]{20,}"),
    ),
    # 64 random bytes in base64 are 86 characters and "==": the shape of every storage key.
    # A key may hold `/`, yet one pasted into a path stands right after (or before) a `/`
    # of the path: there the run of base64 may start or stop too. An ordinary path is
    # seldom a run of exactly 86 such characters ending in "==", so this stays quiet on it.
    (
        "a storage account key",
        _pattern(r"(?<![A-Za-z0-9+])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+=])"),
    ),
    # Entra ID client secrets: 3 characters, a version digit, "Q~", then 31-34 more.
    (
        "a client secret",
        _pattern(
            rf"(?<![{_TOKEN_CHARS}])[{_TOKEN_CHARS}]{{3}}\dQ~[{_TOKEN_CHARS}]{{31,34}}"
            rf"(?![{_TOKEN_CHARS}])"
        ),
    ),
    # The scheme is bounded so a long run like `a.a.a.a...` cannot make the search quadratic.
    (
        "a password in a URL",
        _pattern(rf"\b[a-z][a-z0-9+.-]{{0,30}}://[^/\s:@]+:{_NOT_A_REFERENCE}[^/\s@]+@", re.I),
    ),
    # `password: TEXT` with a space is left alone: it reads as prose in a reason.
    (
        "a password",
        _pattern(
            rf"(?:(?:password|passwd|pwd)(?:\s*=\s*|:)|--(?:password|passwd|pwd)\s+)"
            rf"{_NOT_A_REFERENCE}[^\s;'\"&]{{6,}}",
            re.I,
        ),
    ),
)


# What every detector above needs somewhere in the text (lower-cased), in their order: a
# text with none of these holds no secret they could find. Nearly every string looked at
# holds none (each field of every Slack delivery is looked at before its ack), and one
# search for any of them costs far less than fifteen regular expressions (and a quarter of
# twenty substring tests). A new detector must add its own literal here;
# tests/commands/test_secrets.py checks every kind is still found.
_NEEDED = (
    "private key",
    "accountkey",
    "sharedaccess",  # ...Signature= and ...Key=
    "sig=",  # a SAS: only its signature parameter can make one
    "xox",
    "xapp-",
    "hooks.slack.com/",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "eyj",
    "bearer",
    "==",  # a storage account key ends so
    "q~",  # an Entra ID client secret
    "://",  # a password in a URL
    "pass",  # password, passwd
    "pwd",
)
_ANY_NEEDED = re.compile("|".join(re.escape(needed) for needed in _NEEDED))


def find_secret(text: str) -> str | None:
    """A short name of the kind of secret `text` holds, or None. Never the secret itself."""
    if _ANY_NEEDED.search(text.lower()) is None:
        return None
    for kind, detect in _DETECTORS:
        if detect(text):
            return kind
    return None


def find_secret_in(value: object) -> str | None:
    """`find_secret` over every string inside `value`: a command model's fields, a mapping's
    keys and values (a job's inputs), a sequence's items, however deeply nested. Each string
    is looked at on its own, as it will be stored or shown."""
    if isinstance(value, str):
        return find_secret(value)
    if isinstance(value, BaseModel):
        return find_secret_in(value.model_dump())
    if isinstance(value, Mapping):
        return find_secret_in([*value.keys(), *value.values()])
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            kind = find_secret_in(item)
            if kind is not None:
                return kind
    return None
