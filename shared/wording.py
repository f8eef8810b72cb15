"""Counting in the bot's sentences: "1 node", "2 nodes", never "2 node(s)"."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun that agrees with it: counted(1, "node") is "1 node",
    counted(3, "node") "3 nodes"; `plural` where adding "s" is wrong."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
