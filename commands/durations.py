"""Durations as people type them: 90m, 4h, 2d, 1h30m."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_EXAMPLE = "90m, 4h, 2d or 1h30m"
# Longer than any grant or audit window anyone means; far below what `datetime` can hold,
# so `now - duration` never overflows.
MAX_DURATION = timedelta(weeks=520)
MAX_DURATION_TEXT = "520w (about 10 years)"


class DurationTooLongError(ValueError):
    """A well-formed duration past `MAX_DURATION`."""


def parse_duration(text: str) -> timedelta:
    """Parse `4h`-style text; raise ValueError with a message a person can act on
    (`DurationTooLongError` past `MAX_DURATION`)."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or _PART.sub("", cleaned) != "" or len(cleaned) > 32:
        raise ValueError(f"'{text[:40]}' is not a duration; write it like {DURATION_EXAMPLE}")
    # Whole seconds as a plain int first: `timedelta(weeks=99999999999)` overflows.
    seconds = sum(int(amount) * _SECONDS[unit] for amount, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, like {DURATION_EXAMPLE}")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationTooLongError(f"a duration may be at most {MAX_DURATION_TEXT}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration`, rounded to the minute: 2h, 1d4h, 45m."""
    minutes = max(int(value.total_seconds() // 60), 0)
    if minutes == 0:
        return f"{int(value.total_seconds())}s"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return "".join(parts)
