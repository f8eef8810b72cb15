"""Characters no person types and no store keeps: control characters and lone surrogates.

PostgreSQL refuses NUL in text and JSON, and a lone surrogate (what undecodable bytes
become) cannot be encoded as UTF-8 at all, so either would fail deep in a transaction.
They are refused where text comes in, with the field named. Tab, newline and carriage
return are whitespace to the tokenizer and are kept.
"""

from __future__ import annotations

import re

_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def first_unstorable(text: str) -> str | None:
    """The first character of `text` that must not be stored, or None."""
    match = _UNSTORABLE.search(text)
    return match.group() if match else None


def unstorable_message(field: str, char: str) -> str:
    what = (
        "a control character"
        if not 0xD800 <= ord(char) <= 0xDFFF
        else "an undecodable byte or half a surrogate pair"
    )
    return (
        f"{field} has {what} (U+{ord(char):04X}) that cannot be stored; remove it and give "
        f"plain text."
    )


def storable(text: str) -> str:
    """`text` with each unstorable character replaced by U+FFFD, for keys and echoes."""
    return _UNSTORABLE.sub("\ufffd", text)
