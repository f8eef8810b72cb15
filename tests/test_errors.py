"""The one error tree (shared/errors.py): every error for people renders one way."""

from __future__ import annotations

import inspect

from shared import errors
from shared.errors import (
    AmlbotError,
    NotFoundError,
    NotFoundUserError,
    PermissionDeniedError,
    PermissionRefusedError,
    TransientError,
    UserError,
    WorkspaceError,
    secret_refusal,
)


def test_every_error_in_the_module_descends_from_the_one_root() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert len(classes) >= 10
    assert all(issubclass(cls, AmlbotError) for cls in classes)


def test_user_and_permission_and_not_found_errors_are_user_errors() -> None:
    assert issubclass(PermissionRefusedError, UserError)
    assert issubclass(NotFoundUserError, UserError)


def test_azure_refusals_are_workspace_errors_not_user_errors() -> None:
    for cls in (PermissionDeniedError, NotFoundError, TransientError):
        assert issubclass(cls, WorkspaceError)
        assert not issubclass(cls, UserError)


def test_a_user_error_renders_its_example_on_a_line_of_its_own() -> None:
    error = UserError(
        "--for must be a duration", field="for", example="access request gpu --for 2h"
    )
    assert error.render() == "--for must be a duration\nExample: `access request gpu --for 2h`"
    assert str(error) == error.render()


def test_a_workspace_error_renders_as_its_message() -> None:
    error: AmlbotError = PermissionDeniedError("the bot's identity lacks roleAssignments/write")
    assert error.render() == "the bot's identity lacks roleAssignments/write"
    assert str(error) == error.render()


def test_only_passing_workspace_failures_are_retryable() -> None:
    assert TransientError("throttled").retryable
    assert not WorkspaceError("no such compute").retryable
    assert not UserError("bad").retryable


def test_a_secret_refusal_names_the_kind_and_renders_without_an_example() -> None:
    error = secret_refusal("a SAS token")
    assert error.kind == "a SAS token"
    assert error.render().startswith("That message contains what looks like a SAS token")
    assert "Example:" not in error.render()
