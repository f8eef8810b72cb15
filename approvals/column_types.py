"""The column types of the bot's schema (`approvals/tables.py`): what SQLAlchemy's own types
would store differently on SQLite and PostgreSQL, or not check at all."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, String, TypeDecorator
from sqlalchemy.engine import Dialect

from approvals.payloads import RequestPayload


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (which stores naive text) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PayloadJSON(TypeDecorator[RequestPayload]):
    """A request's payload in a JSON column: in, its model dumped (with `action`); out,
    the JSON as stored, which the `load`/`refresh` listeners below turn into the model
    once the row's `action` and `id` are known (older rows' JSON has no `action`)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(
        self, value: RequestPayload | None, dialect: Dialect
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, BaseModel):
            # A dict would be stored unchecked and read back as whatever it happens to be.
            raise TypeError(
                f"a request payload is a model of approvals.payloads, not {type(value).__name__}"
            )
        return value.model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return value


StatusT = TypeVar("StatusT", bound=enum.StrEnum)


class StatusText(TypeDecorator[StatusT]):
    """A status stored as its plain text value and read back as its enum.

    The column stays a VARCHAR holding the same words as before, so no migration is needed;
    writing a word the enum does not know fails here instead of leaving a row no query matches.
    """

    impl = String
    cache_ok = True

    def __init__(self, status_type: type[StatusT], length: int) -> None:
        super().__init__(length)
        self.status_type = status_type

    def process_bind_param(self, value: StatusT | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.status_type(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> StatusT | None:
        return None if value is None else self.status_type(value)
