"""A test credential for the Azure SDKs: JWT-shaped tokens, every request for one recorded.

azure-ai-ml decodes access tokens as JWTs in places (the tenant id it appends to studio
links, the audience check for user-identity jobs), so an opaque string would take other
code paths than production does. The token is unsigned (`alg: none`): nothing verifies it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

TEST_TENANT_ID = "72f988bf-0000-4000-8000-00000000a1b0"
# The bot's own identity (a managed identity in production).
BOT_OBJECT_ID = "b0b0b0b0-0000-4000-8000-0000000000b0"


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt_for(scope: str, *, object_id: str = BOT_OBJECT_ID, tenant_id: str = TEST_TENANT_ID) -> str:
    """An unsigned JWT whose audience is the resource the scope names."""
    audience = scope.removesuffix("/.default").removesuffix("/")
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "oid": object_id,
        "tid": tenant_id,
        "appid": "a0a0a0a0-0000-4000-8000-0000000000a0",
    }
    return f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}.sig"


class FakeCredential:
    """A `TokenCredential` (and `SupportsTokenInfo`) handing out JWT-shaped test tokens."""

    def __init__(self, *, object_id: str = BOT_OBJECT_ID, tenant_id: str = TEST_TENANT_ID) -> None:
        self.object_id = object_id
        self.tenant_id = tenant_id
        self.scopes_requested: list[str] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            self.scopes_requested.extend(scopes)
        token = jwt_for(scopes[0], object_id=self.object_id, tenant_id=self.tenant_id)
        return AccessToken(token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        access = self.get_token(*scopes)
        return AccessTokenInfo(access.token, access.expires_on)

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeCredential:
        return self

    def __exit__(self, *args: object) -> None:
        pass
