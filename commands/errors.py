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
