"""Every error amlbot shows to a person, in one tree.

    AmlbotError                    the root: `render()` is the text a person reads
    |                              (`str(error)` is the same); it never holds a secret
    |
    +-- UserError                  the person can put it right: the message names the
    |   |                          field and what is allowed, then "Example: `...`"
    |   +-- UsageError             the command text does not parse
    |   +-- SecretRefusedError     the text holds what looks like a secret; `kind` names
    |   |                          the kind ("a SAS token"), never the secret; built by
    |   |                          `secret_refusal()`
    |   +-- PermissionRefusedError policy says no to this person: not a lead of the
    |   |                          workspace, not a member, deciding their own request
    |   +-- NotFoundUserError      nothing of ours has the id or name they gave
    |                              (request, grant, job, cluster, workspace)
    |
    +-- WorkspaceError             the workspace (Azure, or the simulated one) refused or
        |                          failed; Azure's error is translated into the message
        |                          (workspaces/azure/errors.py) with no stack trace
        +-- NotFoundError          Azure has no such resource (compute, job, datastore)
        +-- ConflictError          it exists already, or is in a state that forbids this
        +-- PermissionDeniedError  the bot's own identity lacks an Azure permission; the
        |                          message names the action and the scope for the admin
        +-- QuotaError             the subscription's quota is used up
        +-- TransientError         a passing failure (throttled, timed out, 5xx):
                                   `retryable` is true, so a carry-out is tried again

How each is shown: the one error boundary (`approvals.service.AmlService.run`) answers
any `AmlbotError` with `render()`, and nothing else: a request carried out in the
background records `render()` as its failure and tells the requester; a Slack form shows
`render()` under the field the error names (`UserError.field`). Any other exception is a
fault of ours: the person gets an error id, the log gets the trace.

Two pairs look alike and are not: `PermissionRefusedError` is our policy refusing the
person, `PermissionDeniedError` is Azure refusing the bot; `NotFoundUserError` is an id
the person typed that matches nothing in our records, `NotFoundError` is a resource Azure
does not have (a sweep that meets it, e.g. a job deleted in the studio, stops following).

Not in the tree, because no chat user sees them: `approvals.config_errors.ConfigError` (the
configuration file, printed by `amlbot check-config` and at start), and
`approvals.states.IllegalTransitionError` (a bug: a state change the machine forbids).
"""

from __future__ import annotations


class AmlbotError(Exception):
    """An error a person reads. `render()` is its whole text, safe to show in Slack."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.message = message
        # True when trying the same thing again later may succeed (only the workspace's
        # passing failures); a carry-out is then retried instead of failed.
        self.retryable = retryable
        super().__init__(self.render())

    def render(self) -> str:
        """The text shown to the person: the one way any error here is rendered."""
        return self.message

    def __str__(self) -> str:
        return self.render()


# ---- the person can put it right -------------------------------------------------------


class UserError(AmlbotError):
    """Something the person can fix. Every message names the field, what is allowed and an
    example; `render()` adds the example on a line of its own."""

    def __init__(
        self, message: str, *, field: str | None = None, example: str | None = None
    ) -> None:
        self.field = field
        self.example = example
        super().__init__(message)

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
    """Our policy refuses this person (not a lead, not a member, own request, ...)."""


class NotFoundUserError(UserError):
    """The thing the person named is not in our records (request id, grant id, job, cluster)."""


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


# ---- the workspace refused or failed ---------------------------------------------------


class WorkspaceError(AmlbotError):
    """The workspace refused or failed; the message is Azure's answer, translated for the
    person who asked, and holds no secret."""


class NotFoundError(WorkspaceError):
    """The workspace has no such resource (compute, job, datastore, role assignment)."""


class ConflictError(WorkspaceError):
    """The resource exists already, or its state forbids the change."""


class PermissionDeniedError(WorkspaceError):
    """The bot's own identity lacks an Azure permission; the message names the action and
    the scope, for whoever administers the subscription."""


class QuotaError(WorkspaceError):
    """The subscription's quota for the VM family or region is used up."""


class TransientError(WorkspaceError):
    """A passing failure (throttled, timed out, a server error): worth trying again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)
