"""Durations as people type them: 90m, 4h, 2d, 1h30m."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION_EXAMPLE = "90m, 4h, 2d or 1h30m"


def parse_duration(text: str) -> timedelta:
    """Parse `4h`-style text; raise ValueError with a message a person can act on."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or _PART.sub("", cleaned) != "" or len(cleaned) > 32:
        raise ValueError(f"'{text[:40]}' is not a duration; write it like {DURATION_EXAMPLE}")
    total = timedelta()
    for amount, unit in _PART.findall(cleaned):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if total <= timedelta(0):
        raise ValueError(f"a duration must be longer than zero, like {DURATION_EXAMPLE}")
    return total


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration`, rounded to the minute: 2h, 1d4h, 45m."""
    minutes = max(int(value.total_seconds() // 60), 0)
    if minutes == 0:
        return f"{int(value.total_seconds())}s"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return "".join(parts)
