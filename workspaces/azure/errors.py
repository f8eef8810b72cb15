"""Azure's failures, translated into `WorkspaceError`s a data scientist can act on.

Every call into an Azure SDK goes through `translated()`; stack traces stay in the logs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    QuotaError,
    TransientError,
    WorkspaceError,
)
from workspaces.azure.retry import RetryAfterTooLong

log = logging.getLogger(__name__)

_FORBIDDEN = re.compile(
    r"client '(?P<client>[^']*)'(?: with object id '(?P<oid>[^']*)')?.*?"
    r"perform action '(?P<action>[^']+)' over scope '(?P<scope>[^']+)'",
    re.DOTALL,
)
# Defence in depth: no SAS signature or account key ever reaches a chat message.
_SECRETS = re.compile(r"(sig|AccountKey|SharedAccessSignature|sv)=[^&;\s'\"]+", re.IGNORECASE)

PIM_LICENCE_HINT = (
    "Time-bound assignments (policy `access.mode: pim`) need a Microsoft Entra ID P2 or "
    "Microsoft Entra ID Governance licence in the tenant; without one, use `access.mode: rbac` "
    "and the bot revokes access itself when it expires."
)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: f"{m.group(1)}=<redacted>", text)


def azure_error_parts(error: Any) -> tuple[int | None, str, str]:
    """(HTTP status, Azure error code, Azure message) of an azure-core HttpResponseError."""
    status = getattr(error, "status_code", None)
    code, message = "", ""
    response = getattr(error, "response", None)
    if response is not None:
        try:
            body = json.loads(response.text())
        except (ValueError, TypeError, AttributeError):
            body = None
        if isinstance(body, dict):
            inner: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else body
            code = str(inner.get("code") or "")
            message = str(inner.get("message") or "")
    if not code:
        code = str(getattr(getattr(error, "error", None), "code", "") or "")
    if not message:
        message = str(getattr(error, "reason", "") or "")
    return status, code, redact(message.strip())


def translate(error: BaseException, doing: str) -> WorkspaceError:
    """A `WorkspaceError` for an exception raised while `doing` (e.g. "listing computes")."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(error, WorkspaceError):
        return error
    if isinstance(error, RetryAfterTooLong):
        return TransientError(
            f"Azure is throttling requests while {doing} and asked to wait "
            f"{error.seconds:.0f} s; nothing was changed. Try again in a few minutes."
        )
    if isinstance(error, ClientAuthenticationError) and not isinstance(error, HttpResponseError):
        first_line = redact(str(error).splitlines()[0] if str(error) else "no detail")
        return PermissionDeniedError(
            f"The bot could not sign in to Azure while {doing}: {first_line}. Check its managed "
            "identity or the AZURE_* credentials it runs with."
        )
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return _from_http(error, doing)
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return TransientError(
            f"Azure could not be reached while {doing} ({type(error).__name__}); the request "
            "may not have arrived. Try again in a few minutes."
        )
    ml_message = getattr(error, "message", None)
    if type(error).__module__.startswith("azure.ai.ml") and isinstance(ml_message, str):
        return WorkspaceError(f"Azure ML refused {doing}: {redact(ml_message)}")
    raise error


def _from_http(error: Any, doing: str) -> WorkspaceError:
    status, code, message = azure_error_parts(error)
    detail = f"{message} (Azure code {code})" if code else message
    if status == 403 or code == "AuthorizationFailed":
        found = _FORBIDDEN.search(message)
        if found:
            who = found.group("oid") or found.group("client")
            return PermissionDeniedError(
                f"The bot's identity ({who}) lacks `{found.group('action')}` on "
                f"`{found.group('scope')}`, needed for {doing}. An Azure administrator must "
                "grant it a role that includes that permission."
            )
        return PermissionDeniedError(f"Azure refused {doing}: {detail}")
    if status == 401:
        return PermissionDeniedError(
            f"Azure did not accept the bot's credentials while {doing}: {detail}"
        )
    if code == "RoleAssignmentLimitExceeded":
        return QuotaError(
            "The subscription has reached Azure's limit of 4,000 role assignments, so no "
            "access can be granted until unused assignments are removed. Ask an Azure "
            f"administrator to clean up role assignments. ({message})"
        )
    if code == "AadPremiumLicenseRequired":
        return PermissionDeniedError(f"Azure refused {doing}: {message} {PIM_LICENCE_HINT}")
    if code == "PrincipalNotFound":
        return NotFoundError(
            f"Azure does not know the person's Entra ID object id while {doing}: {message} "
            "Check `object_id` in the configuration."
        )
    if status == 404:
        return NotFoundError(f"Not found while {doing}: {detail}")
    if status == 409:
        return ConflictError(f"Conflict while {doing}: {detail}")
    if status == 429:
        return TransientError(
            f"Azure kept throttling requests while {doing}, even after retries; nothing was "
            "changed. Try again in a few minutes."
        )
    if status is not None and status >= 500:
        return TransientError(
            f"Azure had a temporary failure ({status}) while {doing}, even after retries. "
            "Try again in a few minutes."
        )
    return WorkspaceError(f"Azure refused {doing}: {detail}")


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """Run a block of SDK calls; any Azure failure leaves it as a `WorkspaceError`."""
    try:
        yield
    except WorkspaceError:
        raise
    except Exception as error:
        translated_error = translate(error, doing)
        log.warning("Azure call failed while %s: %r", doing, error)
        raise translated_error from error
