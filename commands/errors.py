"""Errors meant for people. Every message names the field, what is allowed and an example."""

from __future__ import annotations


class UserError(Exception):
    """Something the person can fix. `str()` is the full message shown to them."""

    def __init__(self, message: str, *, field: str | None = None, example: str | None = None):
        self.message = message
        self.field = field
        self.example = example
        super().__init__(self.render())

    def render(self) -> str:
        text = self.message
        if self.example:
            text += f"\nExample: `{self.example}`"
        return text


class UsageError(UserError):
    """The command text does not parse."""


class SecretRefusedError(UserError):
    """The text holds something that looks like a secret; it must not be stored or echoed.

    `kind` names the kind of secret ("a SAS token"), never the secret itself.
    """

    kind: str = "a secret"


class PermissionRefusedError(UserError):
    """The person may not do this (not a lead, not a member, own request, ...)."""


class NotFoundUserError(UserError):
    """The thing named does not exist (request id, grant id, job, cluster)."""


def secret_refusal(kind: str) -> SecretRefusedError:
    """The reply to a message holding a secret. It names the kind only, never the text."""
    error = SecretRefusedError(
        f"That message contains what looks like {kind}, so I did not process it, and the text "
        f"was not stored, logged or audited. Secrets never belong in chat: everyone in the "
        f"conversation, and Slack's exports and search, can read them. If it was real, rotate "
        f"it now.\n"
        f"Use identity-based access instead: "
        f"`/aml datastore register NAME --kind blob --account ACCOUNT --container NAME` "
        f"registers a datastore with no secret at all, and the workspace's managed identity "
        f"or your own Entra ID identity reads the data. If a credential is truly needed, ask a "
        f"team lead to put it in the workspace's Key Vault and name the Key Vault secret in the "
        f"amlbot configuration.",
        field="secret",
    )
    error.kind = kind
    return error
