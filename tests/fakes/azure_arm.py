"""A fake Azure Resource Manager on 127.0.0.1 over TLS, for the real Azure SDK clients.

It serves what amlbot's Azure backend calls: Azure ML workspaces, computes, datastores,
jobs (`azure_arm_ml`) and the assets jobs refer to (`azure_arm_assets`); role definitions,
role assignments, PIM schedule requests, permissions, Microsoft Graph users and a
managed-identity token endpoint (`azure_arm_auth`); the workspace's discovery document, its
RunHistory and the log blobs it hands out SAS URLs for (`azure_run_history`). Shapes follow
the recorded responses in `shared/fixtures/azure/` and the REST API examples in
Azure/azure-rest-api-specs. It
checks the method, path, api-version, bearer token audience, the ARM action each call needs
against what the shipped role (`deploy/azure-custom-role.json`) grants, each body's essential
fields, records every call, pages lists with `nextLink`, polls long-running operations
the way Azure does, and answers 429/503 with `Retry-After` when told to (`fail`).

    with FakeAzure() as fake:
        coords = fake.add_workspace()
        fake.add_cluster(coords, "gpu", current_nodes=2)
        backend = make_azure_workspace(ws_config, fake.cloud_config(), FakeCredential(),
                                       **fake.backend_options())

Another suite running the whole bot with `backend: azure` puts `fake.cloud_config()` in
`AppConfig.cloud` and either installs backends made as above
(`core.backends.install(name, backend)`), or lets the bot build its own: then set the
variables of `fake.managed_identity_env()` (DefaultAzureCredential finds the fake's
managed identity; REQUESTS_CA_BUNDLE trusts its CA) and `fake.lro_retry_after = "0.01"`
so long-running operations do not wait the production polling interval.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import ssl
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import trustme

from tests.fakes import (
    azure_arm_assets,
    azure_arm_auth,
    azure_arm_costs,
    azure_arm_ml,
    azure_arm_quota,
    azure_run_history,
)
from tests.fakes.azure_arm_state import ArmError, ArmState, Call, FakeResponse
from tests.fakes.serving import ServesWhileOpen
from workspaces.azure.settings import CloudConfig
from workspaces.types import AzureCoordinates

__all__ = ["ArmError", "Call", "FakeAzure", "FakeResponse", "start_fake_azure"]

Handler = Callable[["FakeAzure", "Request", dict[str, str]], FakeResponse]
# The ARM action a route needs: fixed, or named from the path (`codes` or `data`).
Action = str | Callable[[dict[str, str]], str] | None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    api_versions: frozenset[str] | None  # None: no api-version (Graph, token endpoint)
    audience: str  # "arm" | "graph" | "none"
    action: Action  # what Azure RBAC checks before serving it; None: not an RBAC check


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: str | None
    code: str
    message: str


@dataclass
class _Lro:
    polls_left: int
    finish: Callable[[], None] | None
    url: str
    final: FakeResponse | None = None


class FakeAzure(ArmState, ServesWhileOpen):
    """The fake. Start it with `with FakeAzure() as fake:` or `start_fake_azure()`."""

    def __init__(self, *, page_size: int = 2, lro_polls: int = 1) -> None:
        super().__init__()
        self.page_size = page_size
        self.lro_polls = lro_polls  # "in progress" answers before an operation succeeds
        self.lro_retry_after: str | None = None  # Retry-After on operation answers, if set
        self.latency = 0.0  # seconds every answer takes, as Azure's do (benchmarks set it)
        self.calls: list[Call] = []
        self._faults: list[Fault] = []
        self._lros: dict[str, _Lro] = {}
        self._ids = itertools.count(1)
        self._routes: list[Route] = []
        self.server_errors: list[str] = []  # tracebacks of handler bugs (answered 500)
        self._ca = trustme.CA()
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-azure-")
        self.ca_bundle = str(Path(self._tmp.name) / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_bundle)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        azure_arm_ml.register(self)
        azure_arm_quota.register(self)
        azure_arm_costs.register(self)
        azure_arm_assets.register(self)
        azure_arm_auth.register(self)
        azure_run_history.register(self)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeAzure:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._tmp.cleanup()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def cloud_config(self) -> CloudConfig:
        """A custom cloud whose resource manager (and Entra ID, and studio) is this fake."""
        return CloudConfig(
            name="custom",
            resource_manager=self.base_url + "/",
            active_directory=self.base_url + "/",
            studio=self.base_url + "/studio/",
        )

    def backend_options(self) -> dict[str, Any]:
        """Keyword options for `make_azure_workspace`/`AzureWorkspace` against this fake:
        its CA, its Graph, and retries and polling that do not slow a test down."""
        from workspaces.azure.retry import RetrySettings

        return {
            "connection_verify": self.ca_bundle,
            "graph_endpoint": self.base_url,
            "retry": RetrySettings(
                backoff_seconds=0.01, max_backoff_seconds=0.05, polling_interval_seconds=0.01
            ),
        }

    def managed_identity_env(self) -> dict[str, str]:
        """Environment under which `DefaultAzureCredential` gets tokens from this fake (the
        App Service managed-identity protocol). Also set REQUESTS_CA_BUNDLE to `ca_bundle`."""
        return {
            "IDENTITY_ENDPOINT": self.base_url + azure_arm_auth.MSI_PATH,
            "IDENTITY_HEADER": azure_arm_auth.MSI_SECRET,
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
        }

    # -- test controls -------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path_pattern: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` matching calls with `status` (and `Retry-After`)."""
        default_codes = {429: "TooManyRequests", 503: "ServiceUnavailable", 500: "InternalError"}
        self._faults.append(
            Fault(
                method=method.upper(),
                pattern=re.compile(path_pattern, re.IGNORECASE),
                status=status,
                times=times,
                retry_after=None if retry_after is None else str(retry_after),
                code=code or default_codes.get(status, "Failed"),
                message=message or f"Injected failure {status}.",
            )
        )

    def end_job(
        self,
        coords: AzureCoordinates,
        name: str,
        status: str,
        *,
        ran_for: timedelta | None = None,
        queued_for: timedelta = timedelta(seconds=20),
        error: str | None = None,
        log: str | None = None,
        log_name: str = azure_run_history.STD_LOG,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """End a job as Azure does: ARM's status, RunHistory's times (from its creation)
        and error, its log as a blob behind a SAS URL, and the metrics it logged."""
        azure_run_history.end_job(
            self,
            coords,
            name,
            status,
            ran_for=ran_for,
            queued_for=queued_for,
            error=error,
            log=log,
            log_name=log_name,
            metrics=metrics,
        )

    def add_job(
        self,
        coords: AzureCoordinates,
        name: str,
        *,
        status: str = "Running",
        tags: dict[str, str] | None = None,
        compute: str = "gpu",
    ) -> None:
        """A command job already in the workspace (as if submitted), in `status`."""
        ws = self.workspace(coords)
        props = {
            "jobType": "Command",
            "command": "python train.py",
            "environmentId": "azureml://registries/azureml/environments/AzureML-sklearn-1.5/"
            "versions/12",
            "computeId": f"{ws.id}/computes/{compute}",
            "tags": dict(tags or {}),
        }
        body = azure_arm_ml.job_body(self, ws, name, props)
        body["properties"]["status"] = status
        with self.lock:
            ws.jobs[name.lower()] = body

    def sas_queries(self) -> list[str]:
        """Every SAS query string this fake handed out (each is a secret to the bot)."""
        with self.lock:
            return [blob.query for blob in self.blobs.values()]

    def calls_to(self, method: str, path_pattern: str) -> list[Call]:
        pattern = re.compile(path_pattern, re.IGNORECASE)
        with self.lock:
            return [c for c in self.calls if c.method == method and pattern.search(c.path)]

    # -- used by handlers ----------------------------------------------------------------

    def route(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        api_versions: set[str] | None,
        audience: str = "arm",
        action: Action = None,
    ) -> None:
        """Serve `method pattern` with `handler`. `action` is the ARM action Azure would
        check for it (`Microsoft.X/type/.../read|write|delete` or `.../name/action`): the
        call is refused with AuthorizationFailed unless the bot's role grants it."""
        self._routes.append(
            Route(
                method=method,
                pattern=re.compile(f"^{pattern}$", re.IGNORECASE),
                handler=handler,
                api_versions=frozenset(api_versions) if api_versions is not None else None,
                audience=audience,
                action=action,
            )
        )

    def page(self, request: Request, items: list[dict[str, Any]]) -> FakeResponse:
        """One page of a list, with `nextLink` to the next (ARM's paging)."""
        start = int(request.query.get("$skipToken", "0"))
        chunk = items[start : start + self.page_size]
        body: dict[str, Any] = {"value": chunk}
        if start + self.page_size < len(items):
            query = {**request.query, "$skipToken": str(start + self.page_size)}
            body["nextLink"] = f"{self.base_url}{quote(request.path)}?{urlencode(query)}"
        return FakeResponse(200, body)

    def start_lro(
        self,
        *,
        style: str,
        location: str,
        finish: Callable[[], None] | None,
        final: FakeResponse | None = None,
        accepted: FakeResponse | None = None,
    ) -> FakeResponse:
        """Answer 202 (or `accepted`) and let the client poll: `Azure-AsyncOperation`
        (a status document) or `Location` (202 until done, then the final response)."""
        op_id = f"op-{next(self._ids)}"
        sub = self.lro_subscription
        url = (
            f"{self.base_url}/subscriptions/{sub}/providers/Microsoft.MachineLearningServices"
            f"/locations/{location}/{'computeOperationsStatus' if style == 'async' else 'mfeOperationResults'}"
            f"/{op_id}?api-version=2024-04-01"
        )
        with self.lock:
            self._lros[op_id] = _Lro(self.lro_polls, finish, url, final)
        response = accepted or FakeResponse(202, None)
        header = "Azure-AsyncOperation" if style == "async" else "Location"
        response.headers[header] = url
        return self._with_retry_after(response)

    def _with_retry_after(self, response: FakeResponse) -> FakeResponse:
        if self.lro_retry_after is not None:
            response.headers["Retry-After"] = self.lro_retry_after
        return response

    def poll_lro(self, op_id: str, *, style: str) -> FakeResponse:
        with self.lock:
            lro = self._lros.get(op_id)
            if lro is None:
                raise ArmError(404, "NotFound", f"Operation {op_id} was not found.")
            if lro.polls_left > 0:
                lro.polls_left -= 1
                done = False
            else:
                done = True
                finish, lro.finish = lro.finish, None
        if not done:
            if style == "async":
                return self._with_retry_after(
                    FakeResponse(200, {"name": op_id, "status": "InProgress"})
                )
            return self._with_retry_after(FakeResponse(202, None, {"Location": lro.url}))
        if finish is not None:
            finish()
        if style == "async":
            return FakeResponse(200, {"name": op_id, "status": "Succeeded"})
        return lro.final or FakeResponse(200, None)

    # -- dispatch ------------------------------------------------------------------------

    def dispatch(self, request: Request) -> FakeResponse:
        if self.latency:
            time.sleep(self.latency)  # outside the lock: calls overlap as they do in Azure
        call = Call(
            request.method, request.path, dict(request.query), request.body, dict(request.headers)
        )
        response = self._dispatch(request, call)
        response.headers.setdefault("x-ms-request-id", call.request_id)
        return response

    def _dispatch(self, request: Request, call: Call) -> FakeResponse:
        with self.lock:
            self.calls.append(call)
            for fault in self._faults:
                if (
                    fault.times > 0
                    and fault.method == request.method
                    and fault.pattern.search(request.path)
                ):
                    fault.times -= 1
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    return ArmError(fault.status, fault.code, fault.message).response(headers)
        matched_path = False
        for route in self._routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            matched_path = True
            if route.method != request.method:
                continue
            if route.api_versions is not None and request.api_version not in route.api_versions:
                return ArmError(
                    400,
                    "InvalidApiVersionParameter",
                    f"The api-version '{request.api_version}' is invalid for this path. "
                    f"Supported: {', '.join(sorted(route.api_versions))}.",
                ).response()
            problem = self._check_token(request, route.audience)
            if problem is not None:
                return problem
            try:
                if route.action is not None:
                    groups = match.groupdict()
                    action = route.action if isinstance(route.action, str) else route.action(groups)
                    self.authorize(action, request.path)
                return route.handler(self, request, match.groupdict())
            except ArmError as error:
                return error.response()
            except Exception:
                self.server_errors.append(traceback.format_exc())
                return ArmError(500, "FakeBug", "The fake failed; see server_errors.").response()
        if matched_path:
            return ArmError(405, "MethodNotAllowed", f"{request.method} not allowed.").response()
        return ArmError(
            404, "NoRouteFound", f"The fake serves no {request.method} {request.path}."
        ).response()

    def _check_token(self, request: Request, audience: str) -> FakeResponse | None:
        if audience == "none":
            return None
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ).response()
        claims = _jwt_claims(header.removeprefix("Bearer "))
        if claims is None:
            return ArmError(
                401, "InvalidAuthenticationToken", "The access token is invalid."
            ).response()
        if claims.get("aud", "").rstrip("/") != self.base_url:
            return ArmError(
                401,
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource "
                f"'{claims.get('aud')}'. It should exactly match with one of the allowed "
                f"audiences '{self.base_url}/'.",
            ).response()
        self.caller_object_id = str(claims.get("oid", self.caller_object_id))
        return None


def start_fake_azure(**kwargs: Any) -> FakeAzure:
    """Start a fake (stop it with `.stop()`); for suites that cannot use `with`."""
    return FakeAzure(**kwargs).start()


def coordinates(subscription_id: str, resource_group: str, workspace: str) -> AzureCoordinates:
    return AzureCoordinates(
        subscription_id=subscription_id, resource_group=resource_group, workspace_name=workspace
    )


def _jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _handler_class(fake: FakeAzure) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
            request = Request(
                method=self.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            response = fake.dispatch(request)
            if isinstance(response.body, bytes):
                payload = response.body
                content_type = "application/octet-stream"
            else:
                payload = b"" if response.body is None else json.dumps(response.body).encode()
                content_type = "application/json; charset=utf-8"
            self.send_response(response.status)
            if response.body is not None:
                self.send_header("Content-Type", content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve

    return _Handler
