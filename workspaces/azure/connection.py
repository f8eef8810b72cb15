"""How the bot reaches an Azure cloud, for every workspace's clients
(`workspaces/azure/clients.py`): the endpoints, credential, TLS trust and retry policy of a
`Connection`, the azure-core pipelines built from it, and the connection pools they share.

Each pipeline has the connection's `AzureCallPolicy` after its retry policy
(`workspaces/azure/telemetry.py`). A pipeline for SAS URLs carries no token, and the SAS is
redacted from urllib3's own request logs.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.core import PipelineClient
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    ContentDecodePolicy,
    HeadersPolicy,
    NetworkTraceLoggingPolicy,
    RedirectPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import RequestsTransport

from workspaces.azure.cloud import CloudEndpoints
from workspaces.azure.errors import redact
from workspaces.azure.retry import BoundedRetryPolicy
from workspaces.azure.telemetry import AzureCallPolicy

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

USER_AGENT = "amlbot"

# An ended job's details are a nicety on an announcement that waits for them: a slow or
# failing service may cost it seconds, not the minutes other calls may retry for.
DETAILS_RETRIES = 2
DETAILS_TOTAL_SECONDS = 30.0
DETAILS_MAX_RETRY_AFTER_SECONDS = 10.0
DETAILS_TIMEOUTS = {"connection_timeout": 10.0, "read_timeout": 20.0}


@dataclass(frozen=True)
class Connection:
    """How to reach a cloud: endpoints, credential, TLS trust, retries."""

    endpoints: CloudEndpoints
    credential: TokenCredential
    retry_policy: BoundedRetryPolicy
    # True: the system trust store, or REQUESTS_CA_BUNDLE when set; a path: that CA bundle.
    connection_verify: bool | str = True
    # Logs and counts each attempt of each request, in every client of this connection.
    call_policy: AzureCallPolicy = field(default_factory=AzureCallPolicy)

    def transport_kwargs(self) -> dict[str, Any]:
        return {"connection_verify": self.connection_verify}

    def sdk_kwargs(self) -> dict[str, Any]:
        """For an SDK client: TLS trust, and the call policy after its retry policy."""
        return {**self.transport_kwargs(), "per_retry_policies": [self.call_policy]}

    def pipeline(
        self,
        base_url: str,
        scope: str,
        *,
        retry_policy: BoundedRetryPolicy | None = None,
        timeouts: dict[str, float] | None = None,
        service: str = "arm",
    ) -> PipelineClient[Any, Any]:
        policies = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker=USER_AGENT),
            ContentDecodePolicy(),
            RedirectPolicy(),
            retry_policy or self.retry_policy,
            BearerTokenCredentialPolicy(self.credential, scope),
            self.call_policy.for_service(service),
            NetworkTraceLoggingPolicy(),
        ]
        return PipelineClient(
            base_url,
            policies=policies,
            transport=self._transport(timeouts),
        )

    def anonymous_pipeline(
        self,
        *,
        retry_policy: BoundedRetryPolicy | None = None,
        timeouts: dict[str, float] | None = None,
    ) -> PipelineClient[Any, Any]:
        """For URLs that need no token or carry their own (a SAS). No bearer token may go
        there, and no policy that can log a URL is in the way."""
        _keep_sas_out_of_transport_logs()
        policies = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker=USER_AGENT),
            RedirectPolicy(),
            retry_policy or self.retry_policy,
            self.call_policy.for_service("storage"),
        ]
        return PipelineClient(
            "",
            policies=policies,
            transport=self._transport(timeouts),
        )

    def _transport(self, timeouts: dict[str, float] | None) -> RequestsTransport:
        return shared_transport(self.connection_verify, timeouts)

    def details_retry_policy(self) -> BoundedRetryPolicy:
        return self.retry_policy.tightened(
            retries=DETAILS_RETRIES,
            total_seconds=DETAILS_TOTAL_SECONDS,
            max_retry_after_seconds=DETAILS_MAX_RETRY_AFTER_SECONDS,
        )


# Connections kept open per host, for all the workspaces at once (a sweep calls them side by
# side; more would be opened and thrown away, each with a TLS handshake).
POOL_MAXSIZE = 32
_transports: dict[tuple[str, tuple[tuple[str, float], ...]], RequestsTransport] = {}
_transports_lock = threading.Lock()


def shared_transport(
    connection_verify: bool | str, timeouts: dict[str, float] | None
) -> RequestsTransport:
    """One connection pool per TLS trust and timeouts, shared by every workspace's clients:
    50 workspaces reuse a few connections instead of opening 50."""
    import requests
    from azure.core.pipeline.transport._requests_basic import (  # type: ignore[attr-defined]
        BiggerBlockSizeHTTPAdapter,
    )
    from urllib3 import Retry

    key = (str(connection_verify), tuple(sorted((timeouts or {}).items())))
    with _transports_lock:
        transport = _transports.get(key)
        if transport is None:
            session = requests.Session()
            # What azure-core does to a session it owns: no retries below its own policy.
            adapter = BiggerBlockSizeHTTPAdapter(
                max_retries=Retry(total=False, redirect=False, raise_on_status=False),
                pool_connections=10,
                pool_maxsize=POOL_MAXSIZE,
            )
            for scheme in ("http://", "https://"):
                session.mount(scheme, adapter)
            transport = RequestsTransport(
                session=session,
                session_owner=False,
                connection_verify=connection_verify,
                **(timeouts or {}),
            )
            _transports[key] = transport
        return transport


class _SasRedactingFilter(logging.Filter):
    """urllib3 logs each request line, query string and all, at DEBUG: for a log blob that
    is its SAS. The signature is redacted before any handler sees the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_sas_filter_lock = threading.Lock()
_sas_filter = _SasRedactingFilter()


def _keep_sas_out_of_transport_logs() -> None:
    with _sas_filter_lock:
        for name in ("urllib3.connectionpool", "urllib3.util.retry"):
            logger = logging.getLogger(name)
            if _sas_filter not in logger.filters:
                logger.addFilter(_sas_filter)
