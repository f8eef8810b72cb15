"""How a configuration that cannot be used reads to the operator: each problem names its
key path (a rule by its index and name), what is wrong, and a close spelling if one exists.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError


class ConfigError(Exception):
    """Configuration that cannot be used; `errors` name each key path and what is allowed."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _rule_path(loc: tuple[int | str, ...], raw: Any) -> str:
    """`workspaces.demo.policy.rules[2] (gpu).when.max_hours`: a rule's index in brackets
    and its name after it, so the error points at the rule by both."""
    parts: list[str] = []
    node = raw
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            node = item
            if not (parts and parts[-1].endswith("rules")):
                parts.append(str(part))
                continue
            name = item.get("name") if isinstance(item, dict) else None
            parts[-1] += f"[{part}]" + (f" ({name})" if isinstance(name, str) else "")
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def format_validation_error(error: ValidationError, raw: Any = None) -> list[str]:
    lines = []
    for item in error.errors():
        path = _rule_path(item["loc"], raw) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        lines.append(f"{path}: {message}")
    return lines
