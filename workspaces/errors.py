"""What can go wrong in a workspace, phrased for the person who asked."""

from __future__ import annotations


class WorkspaceError(Exception):
    """A failure the user can read. `str(error)` is safe to show in Slack: it holds no secret."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class NotFoundError(WorkspaceError):
    pass


class ConflictError(WorkspaceError):
    pass


class PermissionDeniedError(WorkspaceError):
    pass


class QuotaError(WorkspaceError):
    pass


class TransientError(WorkspaceError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)
