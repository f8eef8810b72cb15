"""Modals: the reason for a denial, and the forms behind `/aml job submit` and
`/aml datastore register` typed with no arguments. Input block ids are the names the
form's values are read back by (`FormValues`) and field errors are attached to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.slack.views.common import (
    DATASTORE_MODAL,
    DENY_MODAL,
    JOB_MODAL,
    SURFACE_MAX_BLOCKS,
    as_payload,
    clip,
    escape,
)

MAX_OPTIONS = 100  # Slack's limit for a static select


@dataclass(frozen=True)
class ClusterChoice:
    name: str
    description: str
    nodes: int


def _modal(
    callback_id: str,
    title: str,
    blocks: Sequence[Block],
    *,
    submit: str | None,
    private_metadata: str = "",
) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=callback_id,
        title=PlainTextObject(text=clip(title, 24)),
        submit=PlainTextObject(text=submit) if submit else None,
        close=PlainTextObject(text="Cancel" if submit else "Close"),
        private_metadata=private_metadata,
        blocks=as_payload(blocks, max_blocks=SURFACE_MAX_BLOCKS),
    )
    return view.to_dict()


def _text_input(
    block_id: str,
    label: str,
    *,
    optional: bool = False,
    multiline: bool = False,
    placeholder: str | None = None,
    hint: str | None = None,
    max_length: int | None = None,
) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=label,
        optional=optional,
        hint=hint,
        element=PlainTextInputElement(
            action_id=block_id,
            multiline=multiline,
            placeholder=placeholder,
            max_length=max_length,
        ),
    )


def _select(
    block_id: str, label: str, choices: Sequence[tuple[str, str]], *, optional: bool = False
) -> InputBlock:
    options = [Option(value=value, text=clip(text, 75)) for value, text in choices[:MAX_OPTIONS]]
    return InputBlock(
        block_id=block_id,
        label=label,
        optional=optional,
        element=StaticSelectElement(action_id=block_id, options=options),
    )


def message_modal(title: str, text: str) -> dict[str, Any]:
    """A modal that only says something: loading, or what went wrong."""
    blocks = [SectionBlock(text=MarkdownTextObject(text=clip(text, 3000)))]
    return _modal("amlbot.message", title, blocks, submit=None)


def deny_modal(request_id: int, title: str, private_metadata: str) -> dict[str, Any]:
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=f"*{escape(clip(title, 2900))}*")),
        _text_input(
            "reason",
            "Why? The requester sees this.",
            multiline=True,
            placeholder="e.g. use the shared lake instead",
            max_length=500,
        ),
    ]
    return _modal(
        DENY_MODAL,
        f"Deny #{request_id}",
        blocks,
        submit="Deny",
        private_metadata=private_metadata,
    )


def job_modal(
    workspace: str,
    clusters: Sequence[ClusterChoice],
    environments: Sequence[str],
    datastores: Sequence[str],
    private_metadata: str,
) -> dict[str, Any]:
    blocks: list[Block] = [
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"Workspace `{escape(workspace)}`. Same rules as "
                    f"`/aml job submit`: see `/aml help job submit`."
                )
            ]
        ),
        _select("compute", "Compute cluster", [(c.name, c.description) for c in clusters]),
    ]
    if environments:
        blocks.append(_select("environment", "Environment", [(e, e) for e in environments]))
    else:  # the workspace did not list any: let the person type one
        blocks.append(
            _text_input("environment", "Environment", placeholder="AzureML-sklearn-1.5@latest")
        )
    most = max((c.nodes for c in clusters), default=1)
    blocks += [
        _text_input("command", "Command", multiline=True, placeholder="python train.py"),
        InputBlock(
            block_id="instances",
            label="Instances (nodes)",
            optional=True,
            hint=f"1 to the cluster's size (at most {most} here)",
            element=NumberInputElement(
                action_id="instances",
                is_decimal_allowed=False,
                initial_value="1",
                min_value="1",
                max_value=str(most),
            ),
        ),
        _text_input(
            "max_duration",
            "Time limit",
            optional=True,
            placeholder="4h",
            hint="Azure stops the job after this; the cost estimate is nodes x price x this.",
        ),
        _text_input(
            "code", "Code", optional=True, placeholder="a git URL or azureml:// path to the code"
        ),
    ]
    if datastores:
        blocks.append(
            _select(
                "input_datastore",
                "Input data from datastore",
                [(d, d) for d in datastores],
                optional=True,
            )
        )
        blocks.append(
            _text_input(
                "input_path",
                "Path in that datastore",
                optional=True,
                placeholder="training/2024/",
                hint="Becomes the job input `data` (azureml://datastores/NAME/paths/PATH).",
            )
        )
    blocks += [
        _text_input("experiment", "Experiment", optional=True, placeholder="amlbot"),
        _text_input("name", "Display name", optional=True),
    ]
    return _modal(
        JOB_MODAL, "Submit a job", blocks, submit="Submit", private_metadata=private_metadata
    )


def datastore_modal(
    workspace: str, existing: Sequence[str], private_metadata: str
) -> dict[str, Any]:
    taken = ", ".join(f"`{escape(name)}`" for name in existing) or "none"
    blocks: list[Block] = [
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=clip(
                        f"Workspace `{escape(workspace)}`. Identity-based access only: no keys "
                        f"or SAS tokens. Datastores already there: {taken}",
                        2000,
                    )
                )
            ]
        ),
        _text_input("name", "Datastore name", placeholder="trainingdata", max_length=255),
        _select(
            "kind",
            "Kind",
            [
                ("blob", "Azure Blob container"),
                ("adls-gen2", "ADLS Gen2 filesystem"),
                ("file", "Azure file share"),
            ],
        ),
        _text_input("account", "Storage account", placeholder="contosodata", max_length=24),
        _text_input("container", "Container / filesystem / share", placeholder="training"),
        _text_input("description", "Description", optional=True, multiline=True, max_length=500),
    ]
    return _modal(
        DATASTORE_MODAL,
        "Register a datastore",
        blocks,
        submit="Ask",
        private_metadata=private_metadata,
    )
