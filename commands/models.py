"""One pydantic model per command: what the parser produces and the core consumes."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from commands.plain_text import first_unstorable
from workspaces.types import DatastoreKind


def _plain(text: str) -> str:
    char = first_unstorable(text)
    if char is not None:
        raise ValueError(f"has a control character (U+{ord(char):04X}) that cannot be stored")
    return text


# Free text that is stored: the parser refuses these characters with the field named;
# this is the net for commands built without it (a modal's deny reason).
PlainText = Annotated[str, AfterValidator(_plain)]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # `--workspace`; None lets the core pick the person's only workspace or the channel's.
    workspace: str | None = None


class Help(Command):
    kind: Literal["help"] = "help"
    topic: str | None = None


class WhoAmI(Command):
    kind: Literal["whoami"] = "whoami"


class ComputeList(Command):
    kind: Literal["compute list"] = "compute list"


class AccessRequest(Command):
    kind: Literal["access request"] = "access request"
    cluster: str
    duration: timedelta | None = None  # None: the policy's default
    reason: PlainText = Field(min_length=3, max_length=500)
    # Ends when the holder's work on the cluster ends (or at the time limit, `duration`).
    until_done: bool = False
    # Break-glass: self-approved for a short, policy-capped time; reviewed by a lead after.
    emergency: bool = False


class AccessList(Command):
    kind: Literal["access list"] = "access list"


class AccessRevoke(Command):
    kind: Literal["access revoke"] = "access revoke"
    grant_id: int


class DatastoreRegister(Command):
    kind: Literal["datastore register"] = "datastore register"
    name: str
    store_kind: DatastoreKind
    account: str
    container: str
    description: PlainText | None = None


class DatastoreList(Command):
    kind: Literal["datastore list"] = "datastore list"


class JobSubmit(Command):
    kind: Literal["job submit"] = "job submit"
    compute: str
    environment: str  # normalised: `NAME@latest`, `azureml:NAME:VERSION` or an image
    command: PlainText
    code: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)  # name -> URI
    instances: int = 1
    max_duration: timedelta | None = None  # None: the policy's default limit, if any
    experiment: str | None = None
    name: str | None = None  # display name chosen by the person


class JobStatusQuery(Command):
    kind: Literal["job status"] = "job status"
    job: str


class JobList(Command):
    kind: Literal["job list"] = "job list"
    mine: bool = False


class JobCancel(Command):
    kind: Literal["job cancel"] = "job cancel"
    job: str


class JobWatch(Command):
    kind: Literal["job watch"] = "job watch"
    job: str


class JobUnwatch(Command):
    kind: Literal["job unwatch"] = "job unwatch"
    job: str


class RequestList(Command):
    kind: Literal["request list"] = "request list"


class RequestShow(Command):
    kind: Literal["request show"] = "request show"
    request_id: int


class RequestCancel(Command):
    kind: Literal["request cancel"] = "request cancel"
    request_id: int


class Approve(Command):
    kind: Literal["approve"] = "approve"
    request_id: int


class Deny(Command):
    kind: Literal["deny"] = "deny"
    request_id: int
    reason: PlainText = Field(min_length=3, max_length=500)


class Audit(Command):
    kind: Literal["audit"] = "audit"
    since: timedelta | None = None


class DriftCheck(Command):
    kind: Literal["drift check"] = "drift check"


class DriftFix(Command):
    kind: Literal["drift fix"] = "drift fix"
    finding_id: int


class IdleReport(Command):
    kind: Literal["idle"] = "idle"


AnyCommand = (
    Help
    | WhoAmI
    | ComputeList
    | AccessRequest
    | AccessList
    | AccessRevoke
    | DatastoreRegister
    | DatastoreList
    | JobSubmit
    | JobStatusQuery
    | JobList
    | JobCancel
    | JobWatch
    | JobUnwatch
    | RequestList
    | RequestShow
    | RequestCancel
    | Approve
    | Deny
    | Audit
    | IdleReport
    | DriftCheck
    | DriftFix
)
