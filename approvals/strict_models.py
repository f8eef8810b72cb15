"""What every model of the configuration file is built from."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from commands.durations import parse_duration


class StrictModel(BaseModel):
    """A part of the configuration: an unknown key is an error (a typo must not be ignored),
    and the parsed file does not change under the bot."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def coerce_duration(value: Any) -> Any:
    """A duration as the file may give it ("90m", "2h", or seconds), for a `before`
    validator of a `timedelta` field; anything else is left to pydantic to refuse."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    return value
