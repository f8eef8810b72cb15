"""The forms behind `/aml job submit` and `/aml datastore register` with no arguments.

Opening: a "loading" modal goes up at once (the trigger id is valid for 3 s only), then
the workspace's clusters, environments and datastores are read by the acking process and the
modal is updated with the form. Submitting: the values are turned back into the typed
command and parsed, so a form and a typed line obey the same rules; a field error goes
back into the modal (`response_action: errors`), anything else runs after the ack
through the same core path as the typed command.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError

from approvals.config import WorkspaceConfig
from bot.slack.deliveries import Delivery
from bot.slack.edge import SlackEdge
from bot.slack.telling import metadata, tell
from bot.slack.views.common import DATASTORE_MODAL, JOB_MODAL
from bot.slack.views.modals import ClusterChoice, datastore_modal, job_modal, message_modal
from commands.parser import parse_command
from shared.errors import UserError, WorkspaceError, secret_refusal
from shared.secrets import find_secret
from workspaces.prices import format_price, hourly_price
from workspaces.types import Priority

FORMS = {("job", "submit"): JOB_MODAL, ("datastore", "register"): DATASTORE_MODAL}

# A parser field (a flag or an argument name) -> the input block that shows its error.
FIELD_BLOCKS = {
    "--compute": "compute",
    "--environment": "environment",
    "--command": "command",
    "--instances": "instances",
    "--max-duration": "max_duration",
    "--code": "code",
    "--input": "input_path",
    "--experiment": "experiment",
    "--name": "name",
    "NAME": "name",
    "--kind": "kind",
    "--account": "account",
    "--container": "container",
    "--description": "description",
}


def values_of(view: dict[str, Any]) -> dict[str, str]:
    """A submitted view's input values by block id, as strings ('' when left empty)."""
    values: dict[str, str] = {}
    for block_id, actions in (view.get("state") or {}).get("values", {}).items():
        for element in actions.values():
            if element.get("type") == "static_select":
                chosen = element.get("selected_option") or {}
                values[block_id] = str(chosen.get("value") or "")
            else:
                values[block_id] = str(element.get("value") or "").strip()
    return values


def job_command(values: dict[str, str], workspace: str) -> str:
    words = ["job", "submit"]
    fields = ("compute", "environment", "command", "instances", "max_duration", "code")
    for field in (*fields, "experiment", "name"):
        if values.get(field):
            words += [f"--{field.replace('_', '-')}", values[field]]
    if values.get("input_datastore") or values.get("input_path"):
        path = values.get("input_path", "").lstrip("/")
        datastore = values.get("input_datastore", "")
        words += ["--input", f"data=azureml://datastores/{datastore}/paths/{path}"]
    return "/aml " + shlex.join([*words, "--workspace", workspace])


def datastore_command(values: dict[str, str], workspace: str) -> str:
    words = ["datastore", "register", values.get("name", "")]
    for flag in ("kind", "account", "container", "description"):
        if values.get(flag):
            words += [f"--{flag}", values[flag]]
    return "/aml " + shlex.join([*words, "--workspace", workspace])


COMMAND_OF: dict[str, Callable[[dict[str, str], str], str]] = {
    JOB_MODAL: job_command,
    DATASTORE_MODAL: datastore_command,
}


def field_errors(callback_id: str, view: dict[str, Any], workspace: str) -> dict[str, str]:
    """What the modal should show next to its fields; empty when the command parses."""
    values = values_of(view)
    for block_id, value in values.items():
        kind = find_secret(value)
        if kind is not None:
            return {block_id: secret_refusal(kind).render()[:150]}
    try:
        parse_command(COMMAND_OF[callback_id](values, workspace))
    except UserError as exc:
        block = FIELD_BLOCKS.get(exc.field or "")
        if block not in values:
            block = "command" if callback_id == JOB_MODAL else "name"
        return {block: exc.render()[:150]}
    return {}


def _form_view(edge: SlackEdge, form: str, ws: WorkspaceConfig, private: str) -> dict[str, Any]:
    """Reads the workspace (may be slow: Azure)."""
    backend = edge.core.backends(ws.name)
    if form == "datastore register":
        names = [d.name for d in backend.list_datastores()]
        return datastore_modal(ws.name, names, private)
    clusters = []
    for cluster in ws.clusters:
        low = cluster.priority == Priority.LOW_PRIORITY
        price = hourly_price(cluster.vm_sku, low_priority=low, region=ws.region)
        cost = f", ~{format_price(price)}/node-h" if price is not None else ""
        label = f"{cluster.name} ({cluster.vm_sku} x{cluster.nodes}{cost})"
        clusters.append(ClusterChoice(cluster.name, label, cluster.nodes))
    environments = backend.list_environments()
    datastores = [d.name for d in backend.list_datastores()]
    return job_modal(ws.name, clusters, environments, datastores, private)


# views.open refuses these for good: retrying the item cannot succeed.
UNUSABLE_TRIGGER = frozenset({"invalid_trigger_id", "expired_trigger_id", "exchanged_trigger_id"})
FORM_NOT_OPENED = (
    "Slack did not let the bot open the form (its trigger ran out or was used). Type "
    "`/aml {form}` again, or give the command with its flags (`/aml help {form}`)."
)


def open_form(
    edge: SlackEdge, delivery: Delivery, person: str, form: str, workspace: str | None
) -> None:
    """Right after the ack, in the acking process: the loading modal within the trigger's
    3 s, then the form once the workspace is read (may be slow: Azure)."""
    body = delivery.body
    try:
        directory = edge.core.service.directory
        ws = directory.resolve_workspace(person, workspace, body.get("channel_id"))
    except UserError as exc:
        tell(edge, body, exc.render())
        return
    title = "Submit a job" if form == "job submit" else "Register a datastore"
    loading = message_modal(title, f"Reading `{ws.name}`'s compute, environments and datastores…")
    try:
        view = edge.client.views_open(trigger_id=body["trigger_id"], view=loading)["view"]
    except SlackApiError as exc:
        if exc.response.get("error") not in UNUSABLE_TRIGGER:
            raise
        # Slack will not open a form for this trigger (expired, used, or not Slack's): say
        # how to go on instead of failing the item.
        tell(edge, body, FORM_NOT_OPENED.format(form=form))
        return
    private = json.dumps(
        {"ws": ws.name, "channel": body.get("channel_id"), "response_url": body.get("response_url")}
    )

    try:
        form_view = _form_view(edge, form, ws, private)
    except WorkspaceError as exc:
        form_view = message_modal(title, f"Could not read the workspace: {exc.render()}")
    edge.client.views_update(view_id=view["id"], hash=view.get("hash"), view=form_view)


def submit_form(edge: SlackEdge, delivery: Delivery) -> None:
    body = delivery.body
    person = edge.person(delivery)
    if person is None:
        return
    refusal = edge.refuse_secret(person, delivery)
    if refusal is not None:
        tell(edge, body, refusal.text, person=person)
        return
    callback_id = str(body["view"]["callback_id"])
    # The typed path: it also audits (without the text) a refused secret.
    text = COMMAND_OF[callback_id](values_of(body["view"]), str(metadata(body)["ws"]))
    reply = edge.run_text(person, text, metadata(body).get("channel"))
    tell(edge, body, reply.text, public=reply.public, person=person)


def register(app: AsyncApp, edge: SlackEdge) -> None:
    async def validate_then_submit(
        ack: AsyncAck,
        body: dict[str, Any],
        context: AsyncBoltContext,
        request: AsyncBoltRequest,
    ) -> None:
        callback_id = str(body["view"]["callback_id"])
        errors = field_errors(callback_id, body["view"], str(metadata(body).get("ws", "")))
        secret = any(find_secret(v) for v in values_of(body["view"]).values())
        if errors and not secret:
            await ack(response_action="errors", errors=errors)
            return
        # A refused secret is kept (withheld) too, so the refusal is told and audited.
        extra: dict[str, Any] = {"response_action": "errors", "errors": errors} if errors else {}
        await edge.accept_then_ack(submit_job, ack, body, context, request, **extra)

    submit_job = edge.register_job(submit_form)

    for callback_id in COMMAND_OF:
        app.view(callback_id)(validate_then_submit)
