"""Retrying throttled and transient Azure calls: backoff, `Retry-After`, and a bound on both.

azure-core's `RetryPolicy` already retries 408/429/5xx and honours `Retry-After`, but it
would sleep for as long as the server asks and keeps going for a week. The bot is holding
a Slack conversation: it waits what Azure asks within a bound, and gives up with a clear
message when Azure asks for more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from azure.core.pipeline.policies import RetryPolicy


@dataclass(frozen=True)
class RetrySettings:
    retries: int = 4  # after the first attempt
    backoff_seconds: float = 0.8  # doubled on each consecutive failure
    max_backoff_seconds: float = 20.0
    max_retry_after_seconds: float = 60.0  # wait at most this long when Azure asks
    total_seconds: float = 180.0  # give up on one call after this long overall
    polling_interval_seconds: float = 5.0  # long-running operations, unless Azure says


class RetryAfterTooLong(Exception):
    """Azure asked us to wait longer than the bound; raised instead of sleeping.

    Not an `AzureError`, so azure-core's retry loop lets it through at once."""

    def __init__(self, seconds: float, status: int) -> None:
        super().__init__(f"Azure asked to retry after {seconds:.0f} s (HTTP {status})")
        self.seconds = seconds
        self.status = status


class BoundedRetryPolicy(RetryPolicy[Any, Any]):
    """`RetryPolicy` with a cap on `Retry-After` and an injectable sleep (tests record it)."""

    def __init__(
        self, settings: RetrySettings, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        super().__init__(
            retry_total=settings.retries,
            retry_connect=settings.retries,
            retry_read=settings.retries,
            retry_status=settings.retries,
            retry_backoff_factor=settings.backoff_seconds,
            retry_backoff_max=settings.max_backoff_seconds,
            timeout=settings.total_seconds,
        )
        self.settings = settings
        self._sleep = sleep

    def tightened(
        self, *, retries: int, total_seconds: float, max_retry_after_seconds: float
    ) -> BoundedRetryPolicy:
        """A stricter copy (never looser than this one), sleeping the same way."""
        settings = replace(
            self.settings,
            retries=min(retries, self.settings.retries),
            total_seconds=min(total_seconds, self.settings.total_seconds),
            max_retry_after_seconds=min(
                max_retry_after_seconds, self.settings.max_retry_after_seconds
            ),
        )
        return BoundedRetryPolicy(settings, sleep=self._sleep)

    def _sleep_for_retry(self, response: Any, transport: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if not retry_after:
            return False
        if retry_after > self.settings.max_retry_after_seconds:
            raise RetryAfterTooLong(retry_after, response.http_response.status_code)
        self._sleep(retry_after)
        return True

    def _sleep_backoff(self, settings: dict[str, Any], transport: Any) -> None:
        backoff = self.get_backoff_time(settings)
        if backoff > 0:
            self._sleep(backoff)
