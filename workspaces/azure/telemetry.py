"""Every HTTP request the bot sends Azure, seen from inside the azure-core pipeline.

`AzureCallPolicy` sits after the retry policy of every client the bot builds (the SDKs'
through `per_retry_policies`, our own pipelines in their policy list), so it sees each
attempt: the first and every retry, a 429 or a 503 as Azure answered it. For each it logs
one line with Azure's `x-ms-request-id` (what Azure support asks for) and tells a
recorder (`AzureCall`), which the bot turns into Prometheus metrics. It never logs a URL
(a SAS is a secret in its query) or a header.

The operation is named as Azure's RBAC names it (`Microsoft.MachineLearningServices/
workspaces/computes/read`, `.../computes/stop/action`), from the request's method and the
resource types in its path, never the names: a bounded set of values, fit for a label.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

log = logging.getLogger("amlbot.azure")

ATTEMPT_KEY = "amlbot_attempt"
VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


@dataclass(frozen=True)
class AzureCall:
    """One attempt of one request, as Azure answered it."""

    operation: str
    method: str
    status: str  # the HTTP status ("200", "429"), or the exception's type when none came
    attempt: int  # 1 for the first, 2 for its first retry, ...
    seconds: float
    request_id: str | None  # Azure's x-ms-request-id

    @property
    def retry(self) -> bool:
        return self.attempt > 1


Recorder = Callable[[AzureCall], None]


def operation_name(method: str, url: str, service: str = "arm") -> str:
    """`Namespace/type/subtype/verb` from the last `providers/` of the path, `/action` for
    a POST to an action; `{service}/verb` for a URL with no provider (Graph, a blob)."""
    segments = [part for part in urlsplit(url).path.split("/") if part]
    lowered = [part.lower() for part in segments]
    if "providers" not in lowered or lowered[-1] == "providers":
        return f"{service}/{VERBS.get(method.upper(), 'action')}"
    start = len(lowered) - 1 - lowered[::-1].index("providers")
    namespace, *rest = segments[start + 1 :]
    # Types and names alternate; a POST's odd path ends with its action (`computes/c/stop`).
    verb = "action" if method.upper() == "POST" else VERBS.get(method.upper(), "action")
    parts = [namespace, *rest[0::2], verb]
    return "/".join(parts)


class AzureCallPolicy(HTTPPolicy[Any, Any]):
    """Logs and records each attempt (placed after the retry policy)."""

    def __init__(self, record: Recorder | None = None, *, service: str = "arm") -> None:
        super().__init__()
        self._record = record
        self.service = service

    def for_service(self, service: str) -> AzureCallPolicy:
        """The same recorder, naming URLs without a provider after `service`."""
        return AzureCallPolicy(self._record, service=service)

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        attempt = int(request.context.get(ATTEMPT_KEY, 0)) + 1
        request.context[ATTEMPT_KEY] = attempt
        operation = operation_name(http.method, http.url, self.service)
        started = time.perf_counter()
        try:
            response = self.next.send(request)
        except Exception as exc:
            self._done(operation, http.method, type(exc).__name__, attempt, started, None)
            raise
        headers = response.http_response.headers
        self._done(
            operation,
            http.method,
            str(response.http_response.status_code),
            attempt,
            started,
            headers.get("x-ms-request-id"),
        )
        return response

    def _done(
        self,
        operation: str,
        method: str,
        status: str,
        attempt: int,
        started: float,
        request_id: str | None,
    ) -> None:
        call = AzureCall(
            operation=operation,
            method=method,
            status=status,
            attempt=attempt,
            seconds=time.perf_counter() - started,
            request_id=request_id,
        )
        failed = not status.isdigit() or int(status) >= 400
        log.log(
            logging.WARNING if failed and status not in ("404", "409") else logging.INFO,
            "Azure %s %s: %s in %.0f ms (attempt %s, x-ms-request-id %s)",
            method,
            operation,
            status,
            call.seconds * 1000,
            attempt,
            request_id or "none",
        )
        if self._record is not None:
            try:
                self._record(call)
            except Exception:  # a metric must never fail an Azure call
                log.exception("recording an Azure call failed")
