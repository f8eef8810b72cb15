"""A secret of any kind the bot knows, pasted anywhere into any free-text field of any way
in (a typed console line, a slash command, the Deny reason, the job and datastore forms,
a button's value), is refused, and afterwards no table of the database, no log line, no
line of the audit export and nothing sent to Slack holds it."""

from __future__ import annotations

import json
import logging
import shlex
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, Table, inspect, select

from approvals.states import RequestStatus
from approvals.tables import AuditRow, RequestRow
from bot.audit_export import export_audit
from bot.settings import Settings
from bot.slack.views.common import (
    APPROVE_ACTION,
    DATASTORE_MODAL,
    DENY_ACTION,
    DENY_MODAL,
    JOB_MODAL,
)
from bot.slack.views.notices import (
    EXTEND_ACTION,
    IDLE_FIX_ACTION,
    IDLE_SHUTDOWN_ACTION,
    SNOOZE_PREFIX,
)
from shared.secrets import find_secret
from tests.slack.conftest import ALICE, BOB, CHANNEL, SlackHarness, wait_for

BASE64 = string.ascii_letters + string.digits + "+/"
URL_SAFE = string.ascii_letters + string.digits + "-_"
ALNUM = string.ascii_letters + string.digits
TOKEN = ALNUM + "_~.-"


@dataclass(frozen=True)
class Secret:
    text: str  # what is pasted
    needle: str  # the part that must never show up again anywhere


def _run(alphabet: str, size: int, most: int | None = None) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=size, max_size=most or size)


def _storage_key() -> st.SearchStrategy[str]:
    return _run(BASE64, 86).map(lambda body: body + "==")


def _sas() -> st.SearchStrategy[Secret]:
    def build(signature: str, lead: str) -> Secret:
        encoded = signature.replace("+", "%2B").replace("/", "%2F") + "%3D"
        query = f"sv=2022-11-02&ss=b&srt=co&sp=rl&se=2030-01-01T00:00:00Z&sig={encoded}"
        return Secret(lead + query, encoded)

    leads = st.sampled_from(["", "?", "https://acct1.blob.core.windows.net/data/a.csv?"])
    return st.builds(build, _run(BASE64, 43), leads)


def _connection_string() -> st.SearchStrategy[Secret]:
    def account_key(key: str) -> Secret:
        return Secret(
            "DefaultEndpointsProtocol=https;AccountName=acct1;"
            f"AccountKey={key};EndpointSuffix=core.windows.net",
            key,
        )

    def service_bus(key: str) -> Secret:
        return Secret(
            "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=Root;"
            f"SharedAccessKey={key}",
            key,
        )

    def signature(sig: Secret) -> Secret:
        return Secret(
            f"BlobEndpoint=https://acct1.blob.core.windows.net/;SharedAccessSignature={sig.text}",
            sig.needle,
        )

    return st.one_of(
        _storage_key().map(account_key),
        _run(BASE64, 43).map(lambda k: service_bus(k + "=")),
        _sas().map(signature),
    )


def _slack_token() -> st.SearchStrategy[str]:
    numbers = st.integers(10**11, 10**13 - 1).map(str)
    return st.one_of(
        st.builds(
            lambda prefix, team, user, rest: f"{prefix}-{team}-{user}-{rest}",
            st.sampled_from(["xoxb", "xoxp"]),
            numbers,
            numbers,
            _run(ALNUM, 24, 32),
        ),
        st.builds(
            lambda app, n, rest: f"xapp-1-A{app}-{n}-{rest}",
            _run(string.ascii_uppercase + string.digits, 10),
            numbers,
            _run("0123456789abcdef", 64),
        ),
    )


def _jwt() -> st.SearchStrategy[Secret]:
    def jwt(header: str, claims: str, signature: str) -> Secret:
        token = f"eyJ{header}.eyJ{claims}.{signature}"
        return Secret(token, token)

    def bearer(token: str) -> Secret:
        return Secret(f"Authorization: Bearer {token}", token)

    return st.one_of(
        st.builds(jwt, _run(URL_SAFE, 16, 40), _run(URL_SAFE, 16, 60), _run(URL_SAFE, 32, 64)),
        _run(ALNUM, 23, 40).map(lambda t: bearer("9" + t)),
    )


def _plain(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[Secret]:
    return strategy.map(lambda text: Secret(text, text))


def _password() -> st.SearchStrategy[Secret]:
    word = _run(ALNUM, 12, 20).map(lambda w: "Pw" + w)
    return st.one_of(
        word.map(lambda w: Secret(f"https://alice:{w}@github.com/contoso/bert.git", w)),
        word.map(lambda w: Secret(f"password={w}", w)),
        word.map(lambda w: Secret(f"Server=db;Uid=ml;Pwd={w};", w)),
        word.map(lambda w: Secret(f"--password {w}", w)),
    )


def _private_key() -> st.SearchStrategy[Secret]:
    return _run(BASE64, 64).map(
        lambda body: Secret(f"-----BEGIN RSA PRIVATE KEY-----\nMII{body}", f"MII{body}")
    )


SECRETS: st.SearchStrategy[Secret] = st.one_of(
    _plain(_storage_key()),
    _sas(),
    _connection_string(),
    _plain(_slack_token()),
    _plain(_run(ALNUM + "_/-", 8, 24).map(lambda p: f"https://hooks.slack.com/services/T0{p}")),
    _plain(_run(ALNUM, 36).map(lambda t: "ghp_" + t)),
    _plain(_run(ALNUM + "_", 40, 60).map(lambda t: "github_pat_" + t)),
    _jwt(),
    _plain(
        st.builds(
            lambda a, d, b: f"{a}{d}Q~{b}", _run(ALNUM, 3), st.sampled_from("78"), _run(TOKEN, 34)
        )
    ),
    _password(),
    _private_key(),
)

# Where in a field the secret sits: alone, inside prose, after `/`, `=` or a quote,
# inside a path or a URL.
CONTEXTS = [
    "{}",
    "see {} please",
    "/{}",
    "x/{}",
    "token={}",
    "'{}'",
    '"{}"',
    "azureml://datastores/workspaceblobstore/paths/{}/part-0.csv",
    "https://acct1.blob.core.windows.net/data/{}",
]

# Typed command lines (console and slash command): `{}` is one shell-quoted word.
TYPED = [
    "access request gpu-cluster --for 1h --reason {}",
    "datastore register {} --kind blob --account acct1 --container c01",
    "datastore register d1 --kind blob --account {} --container c01",
    "datastore register d1 --kind blob --account acct1 --container c01 --description {}",
    "job submit --compute cpu-cluster --environment AzureML-sklearn-1.5@latest --command {}",
    "job submit --compute cpu-cluster --environment {} --command x",
    "job submit --compute cpu-cluster --environment e@latest --command x --code {}",
    "job submit --compute cpu-cluster --environment e@latest --command x --input d={}",
    "job submit --compute cpu-cluster --environment e@latest --command x --name {}",
    "job submit --compute cpu-cluster --environment e@latest --command x --experiment {}",
    "job submit --workspace {}",
    "datastore register --workspace {}",
    "deny 1 --reason {}",
    "job status {}",
    "help {}",
]
JOB_FIELDS = ["command", "code", "input_path", "experiment", "name", "environment", "compute"]
DATASTORE_FIELDS = ["name", "account", "container", "description", "kind"]
BUTTONS = [
    APPROVE_ACTION,
    DENY_ACTION,
    EXTEND_ACTION,
    IDLE_FIX_ACTION,
    IDLE_SHUTDOWN_ACTION,
    SNOOZE_PREFIX + "1h",
]

PATHS = st.one_of(
    st.tuples(st.just("console"), st.sampled_from(TYPED)),
    st.tuples(st.just("slash"), st.sampled_from(TYPED)),
    st.tuples(st.just("deny modal"), st.just("reason")),
    st.tuples(st.just("job form"), st.sampled_from(JOB_FIELDS)),
    st.tuples(st.just("datastore form"), st.sampled_from(DATASTORE_FIELDS)),
    st.tuples(st.just("button"), st.sampled_from(BUTTONS)),
)

REFUSED = "did not process it"


def text_input(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def selected(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


def form_values(fields: dict[str, str], selects: set[str]) -> dict[str, Any]:
    return {
        block: {block: selected(value) if block in selects else text_input(value)}
        for block, value in fields.items()
    }


def refusals(harness: SlackHarness) -> int:
    with harness.core.store.transaction() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.action == "command.refused"))
        return len([row for row in rows if row.outcome == "secret"])


def pending_request(harness: SlackHarness) -> int:
    """A request of alice's for bob to deny (a refused Deny leaves it pending)."""
    with harness.core.store.transaction() as session:
        found = session.scalars(
            select(RequestRow.id).where(RequestRow.status == RequestStatus.PENDING.value)
        ).first()
    if found is not None:
        return found
    harness.command(ALICE, "datastore register lake1 --kind blob --account acct1 --container c01")
    return harness.request_id(harness.answer_to(ALICE, containing="is waiting for a team lead"))


class Leaks:
    """Everything a secret could have reached, read back after the fact."""

    def __init__(self, harness: SlackHarness, caplog: pytest.LogCaptureFixture, tmp: Path):
        self.harness = harness
        self.caplog = caplog
        self.tmp = tmp

    def database(self) -> str:
        engine = self.harness.core.store.engine
        seen: list[str] = []
        with engine.connect() as connection:
            for name in inspect(engine).get_table_names():
                table = Table(name, MetaData(), autoload_with=connection)
                for row in connection.execute(select(table)):
                    seen += [v if isinstance(v, str) else json.dumps(v, default=str) for v in row]
        return "\n".join(seen)

    def audit_export(self) -> str:
        url = self.harness.core.store.engine.url.render_as_string(hide_password=False)
        out = []
        for fmt in ("jsonl", "csv"):
            path = self.tmp / f"audit.{fmt}"
            assert export_audit(Settings(database_url=url), fmt, None, None, str(path)) == 0
            out.append(path.read_text(encoding="utf-8"))
        return "\n".join(out)

    def slack(self) -> str:
        fake = self.harness.slack
        return "\n".join(
            [
                *(json.dumps([c.method, c.params]) for c in fake.calls()),
                *(json.dumps(v.view) for v in fake.views()),
                *(json.dumps(vars(p)) for p in fake.response_posts()),
            ]
        )

    def logs(self) -> str:
        return "\n".join(
            [self.caplog.text, *(r.getMessage() + str(r.exc_text) for r in self.caplog.records)]
        )

    def where(self, needle: str) -> list[str]:
        sinks = {
            "database": self.database,
            "audit export": self.audit_export,
            "Slack": self.slack,
            "logs": self.logs,
        }
        return [name for name, read in sinks.items() if needle in read()]


def send(harness: SlackHarness, way: str, field: str, value: str, acks: list[str]) -> str | None:
    """Paste `value` into `field` of `way`; the text of the answer the person got."""
    slack = harness.slack
    before = len(slack.response_posts())
    if way == "console":
        return harness.core.service.handle_text(
            "alice", "/aml " + field.format(shlex.quote(value))
        ).text
    if way == "slash":
        harness.command(ALICE, field.format(shlex.quote(value)))
        return harness.answer_to(ALICE, after=before)
    if way == "deny modal":
        request_id = pending_request(harness)
        before = len(slack.response_posts())
        private = json.dumps(
            {
                "request_id": request_id,
                "channel": CHANNEL,
                "response_url": slack.response_url(CHANNEL, BOB),
            }
        )
        response = harness.submit(BOB, DENY_MODAL, form_values({"reason": value}, set()), private)
        acks.append(response.body)
        return harness.answer_to(BOB, after=before)
    if way == "button":
        card = harness.card(pending_request(harness))
        before = len(slack.response_posts())
        harness.click(ALICE, field, value, card=card)
        return harness.answer_to(ALICE, after=before)
    private = json.dumps(
        {"ws": "demo", "channel": CHANNEL, "response_url": slack.response_url(CHANNEL, ALICE)}
    )
    if way == "job form":
        fields = {
            "compute": "cpu-cluster",
            "environment": "AzureML-sklearn-1.5@latest",
            "command": "python train.py",
            "code": "",
            "input_datastore": "workspaceblobstore",
            "input_path": "a/b.csv",
            "experiment": "",
            "name": "",
        }
        selects = {"compute", "environment", "input_datastore"}
        callback = JOB_MODAL
    else:
        fields = {
            "name": "d2",
            "kind": "blob",
            "account": "acct1",
            "container": "c01",
            "description": "",
        }
        selects = {"kind"}
        callback = DATASTORE_MODAL
    fields[field] = value
    response = harness.submit(ALICE, callback, form_values(fields, selects), private)
    acks.append(response.body)
    return harness.answer_to(ALICE, after=before)


@pytest.mark.timeout(300)
def test_no_secret_survives_any_way_in(
    harness: SlackHarness,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    database_url: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    leaks = Leaks(harness, caplog, tmp_path)
    examples = 10 if database_url.startswith("postgresql") else 50

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(PATHS, SECRETS, st.sampled_from(CONTEXTS))
    def no_leak(path: tuple[str, str], secret: Secret, context: str) -> None:
        way, field = path
        value = context.format(secret.text)
        assert find_secret(value) is not None, "the generator made a secret the bot misses"
        refused_before = refusals(harness)
        acks: list[str] = []
        answer = send(harness, way, field, value, acks)
        assert answer is not None
        if way == "button":
            # A button carries an id only: anything else is not ours, and says so.
            assert "does not belong to" in answer and "nothing was done" in answer, answer
        else:
            assert REFUSED in answer, answer
            wait_for(lambda: refusals(harness) > refused_before, what="the refusal's audit")
        harness.wake_outbox()
        assert not [ack for ack in acks if secret.needle in ack]
        assert leaks.where(secret.needle) == []

    no_leak()
    # The log sink was real: the edge's threads logged their Slack calls at DEBUG.
    assert any(r.name.startswith("slack_sdk.") for r in caplog.records)
