"""An ended job's outcome on Azure: its times and error from RunHistory, the end of its log
from the blob Azure names, and the announcement they complete. SAS URLs stay secret."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import unquote

import pytest
import yaml
from sqlalchemy import select

from approvals.config import DEMO_CONFIG_PATH, AppConfig
from approvals.following.jobs import follow_jobs
from approvals.idle.spend import idle_spend_between
from approvals.tables import Base, OutboxRow
from bot.wiring import Core
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure import make_azure_workspace, run_history
from workspaces.azure.backend import AzureWorkspace
from workspaces.clock import ManualClock
from workspaces.types import AzureCoordinates, JobSpec

ENV = "azureml:AzureML-sklearn-1.5@latest"
JOB = "amlbot-mlw-team-42"
USER_ERROR = (
    "Execution failed. User process 'python' exited with status code 1. "
    "Please check log file 'user_logs/std_log.txt' for more details."
)
TRACEBACK = "\n".join(
    [
        *(f"epoch {n}: loss=0.{n:02d}" for n in range(1, 31)),
        "Traceback (most recent call last):",
        '  File "train.py", line 12, in <module>',
        "    raise ValueError('label column missing')",
        "ValueError: label column missing",
        "",
    ]
)


def submit(backend: AzureWorkspace, name: str = JOB) -> None:
    backend.submit_job(
        JobSpec(name=name, compute="gpu", environment=ENV, command="python train.py")
    )


# -- the backend ---------------------------------------------------------------------------


def test_a_failed_job_reports_azures_error_its_times_and_the_end_of_its_log(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    submit(backend)
    fake.end_job(
        coords, JOB, "Failed", ran_for=timedelta(seconds=130), error=USER_ERROR, log=TRACEBACK
    )

    outcome = backend.job_outcome(JOB)

    assert outcome.error == USER_ERROR
    assert outcome.started_at is not None and outcome.ended_at is not None
    assert outcome.ended_at - outcome.started_at == timedelta(seconds=130)
    assert outcome.error_log_name == "user_logs/std_log.txt"
    assert len(outcome.error_log_tail) == 20
    assert outcome.error_log_tail[-1] == "ValueError: label column missing"
    assert outcome.error_log_tail[0] == "epoch 15: loss=0.15"


def test_a_completed_job_costs_one_details_call_and_reads_no_log(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    submit(backend)
    fake.end_job(coords, JOB, "Completed", ran_for=timedelta(minutes=2), log="done\n")

    outcome = backend.job_outcome(JOB)

    assert outcome.error is None and outcome.error_log_tail == []
    assert [c.path for c in fake.calls_to("GET", "/history/")] == [
        f"/history/v1.0{coords.workspace_scope}/runs/{JOB}/details"
    ]
    assert fake.calls_to("GET", "/blobs/") == fake.calls_to("HEAD", "/blobs/") == []


def test_a_completed_jobs_metrics_come_from_the_workspaces_mlflow_server(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    submit(backend)
    fake.end_job(
        coords, JOB, "Completed", ran_for=timedelta(minutes=2), metrics={"acc": 0.93, "loss": 0.2}
    )

    outcome = backend.job_outcome(JOB)

    assert outcome.metrics == {"acc": 0.93, "loss": 0.2}
    [call] = fake.calls_to("GET", "/mlflow/")
    assert call.path == f"/mlflow/v1.0{coords.workspace_scope}/api/2.0/mlflow/runs/get"
    assert call.query == {"run_id": JOB}


def test_a_failed_job_asks_mlflow_nothing(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    submit(backend)
    fake.end_job(coords, JOB, "Failed", ran_for=timedelta(minutes=1), error=USER_ERROR, log="x\n")

    backend.job_outcome(JOB)

    assert fake.calls_to("GET", "/mlflow/") == []


def test_run_history_is_found_once_through_the_workspaces_discovery_url(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    for name in ("job-a", "job-b"):
        submit(backend, name)
        fake.end_job(coords, name, "Completed", ran_for=timedelta(minutes=1))
    workspace_reads = len(fake.calls_to("GET", f"{coords.workspace_scope}$"))

    backend.job_outcome("job-a")
    backend.job_outcome("job-b")

    assert len(fake.calls_to("GET", f"{coords.workspace_scope}$")) == workspace_reads + 1
    assert len(fake.calls_to("GET", "^/discovery$")) == 1
    assert len(fake.calls_to("GET", "/history/")) == 2


def test_only_the_end_of_a_long_log_is_read_without_a_token(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    submit(backend)
    chatter = "".join(f"step {n}: still training\n" for n in range(20_000))
    fake.end_job(coords, JOB, "Failed", ran_for=timedelta(hours=1), error=USER_ERROR, log=chatter)

    outcome = backend.job_outcome(JOB)

    [read] = fake.calls_to("GET", "/blobs/")
    assert read.headers["range"].startswith("bytes=")
    start, end = (int(part) for part in read.headers["range"][6:].split("-"))
    assert end - start + 1 <= 16 * 1024 < len(chatter)
    assert "authorization" not in read.headers
    assert outcome.error_log_tail[-1] == "step 19999: still training"


def test_the_log_azures_error_names_is_the_one_read(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    submit(backend)
    fake.end_job(
        coords,
        JOB,
        "Failed",
        ran_for=timedelta(minutes=1),
        error="Please check log file 'azureml-logs/70_driver_log.txt' for more details.",
        log="ModuleNotFoundError: No module named 'torch'\n",
        log_name="azureml-logs/70_driver_log.txt",
    )

    outcome = backend.job_outcome(JOB)

    assert outcome.error_log_name == "azureml-logs/70_driver_log.txt"
    assert outcome.error_log_tail == ["ModuleNotFoundError: No module named 'torch'"]


def test_progress_bars_and_colours_are_shown_as_a_terminal_last_showed_them(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    submit(backend)
    log = "\x1b[31mERROR\x1b[0m disk full\r\n 10%|#  \r 50%|#####  \r 80%|######## \n"
    fake.end_job(coords, JOB, "Failed", ran_for=timedelta(minutes=1), error=USER_ERROR, log=log)

    assert backend.job_outcome(JOB).error_log_tail == ["ERROR disk full", " 80%|########"]


def test_a_line_of_the_log_holding_a_secret_is_withheld(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    submit(backend)
    key = "A" * 86 + "=="
    log = f"connecting with DefaultEndpointsProtocol=https;AccountName=st;AccountKey={key}\nboom\n"
    fake.end_job(coords, JOB, "Failed", ran_for=timedelta(minutes=1), error=USER_ERROR, log=log)

    tail = backend.job_outcome(JOB).error_log_tail

    assert tail == ["[line withheld: it looks like a connection string with AccountKey=]", "boom"]


def test_a_log_that_cannot_be_read_leaves_the_error_and_times(
    backend: AzureWorkspace,
    fake: FakeAzure,
    coords: AzureCoordinates,
    caplog: pytest.LogCaptureFixture,
) -> None:
    submit(backend)
    fake.end_job(coords, JOB, "Failed", ran_for=timedelta(minutes=1), error=USER_ERROR, log="x\n")
    fake.fail("HEAD", "/blobs/", 403, code="AuthenticationFailed")

    outcome = backend.job_outcome(JOB)

    assert outcome.error == USER_ERROR and outcome.ended_at is not None
    assert outcome.error_log_tail == [] and outcome.error_log_name is None
    assert "could not read user_logs/std_log.txt" in caplog.text
    assert_no_sas(fake, caplog.text)


def test_our_run_history_call_and_fields_are_the_installed_sdks(coords: AzureCoordinates) -> None:
    """azure-ai-ml's own request builder and model for run details, which this backend
    calls and reads as JSON itself: an SDK upgrade that moves them fails here."""
    from azure.ai.ml._restclient.runhistory.models import RunDetails
    from azure.ai.ml._restclient.runhistory.operations._operations import (
        build_runs_get_details_request,
    )

    request = build_runs_get_details_request(
        coords.subscription_id, coords.resource_group, coords.workspace_name, JOB
    )
    sample = {
        "status": "Failed",
        "startTimeUtc": "2026-01-05T09:00:20.123Z",
        "endTimeUtc": "2026-01-05T09:02:30.8845306+00:00",
        "error": {"error": {"code": "UserError", "message": USER_ERROR}},
        "logFiles": {"user_logs/std_log.txt": "https://st.blob.core.windows.net/l?sig=x"},
    }
    theirs = RunDetails(sample)

    assert request.method == "GET"
    assert request.url == (
        f"{run_history.details_path(coords, JOB)}?api-version={run_history.RUN_HISTORY_API_VERSION}"
    )
    assert theirs.start_time_utc == run_history.utc_time(sample["startTimeUtc"])
    assert theirs.end_time_utc == run_history.utc_time(sample["endTimeUtc"])
    assert theirs.error.error.message == run_history.error_message(sample["error"])
    assert dict(theirs.log_files) == sample["logFiles"]


# -- the announcement ----------------------------------------------------------------------


@pytest.fixture
def core_on_azure(
    fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str
) -> tuple[Core, AzureCoordinates]:
    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["workspaces"]["demo"]["backend"] = "azure"
    raw["cloud"] = fake.cloud_config().model_dump()
    config = AppConfig.model_validate(raw)
    coords = config.workspaces["demo"].azure
    fake.add_workspace(coords.subscription_id, coords.resource_group, coords.workspace_name)
    fake.add_cluster(coords, "cpu-cluster", min_nodes=1, max_nodes=4, current_nodes=1)
    core = make_core(config, sqlite_url)
    backend = make_azure_workspace(
        config.workspaces["demo"].azure_settings(),
        config.cloud,
        FakeCredential(),
        **fake.backend_options(),
    )
    core.backends.install("demo", backend)
    return core, coords


def submit_through_the_bot(core: Core) -> str:
    reply = core.service.handle_text(
        "alice",
        f'/aml job submit --compute cpu-cluster --environment {ENV} --command "python train.py"',
    )
    assert reply.ok, reply.text
    return reply.text.split("`")[1]


def announcements(core: Core, job: str) -> list[str]:
    with core.store.transaction() as session:
        rows = session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        texts = [str(row.payload.get("text", "")) for row in rows]
    return [text for text in texts if f"`{job}`" in text and "submitted" not in text]


def everything_stored(core: Core) -> str:
    with core.store.engine.connect() as connection:
        return "\n".join(
            repr(connection.execute(select(table)).all()) for table in Base.metadata.sorted_tables
        )


def assert_no_sas(fake: FakeAzure, text: str) -> None:
    queries = fake.sas_queries()
    assert queries, "the fake handed out no SAS, so this proves nothing"
    for query in queries:
        signature = dict(part.split("=", 1) for part in query.split("&"))["sig"]
        assert query not in text
        assert signature not in text and unquote(signature) not in text


def test_a_failed_jobs_announcement_carries_azures_error_and_the_end_of_its_log(
    core_on_azure: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, coords = core_on_azure
    name = submit_through_the_bot(core)
    fake.end_job(
        coords, name, "Failed", ran_for=timedelta(seconds=130), error=USER_ERROR, log=TRACEBACK
    )

    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)

    [failed] = announcements(core, name)
    assert failed.startswith(
        f"Job `{name}` failed on `cpu-cluster` (ran 2m10s, 2m30s after submission).\n"
        f"Error: {USER_ERROR}\n"
        "Last lines of user_logs/std_log.txt:\n```\n"
    )
    assert '  File "train.py", line 12, in <module>\n' in failed
    assert "ValueError: label column missing\n```\nStudio: " in failed


def test_a_completed_jobs_announcement_says_how_long_it_ran(
    core_on_azure: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, coords = core_on_azure
    name = submit_through_the_bot(core)
    fake.end_job(coords, name, "Completed", ran_for=timedelta(seconds=140), log="done\n")

    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)

    [completed] = announcements(core, name)
    assert completed.startswith(
        f"Job `{name}` completed on `cpu-cluster` (ran 2m20s, 2m40s after submission).\nStudio: "
    )


def test_a_completed_jobs_announcement_carries_its_metrics_and_survives_without_them(
    core_on_azure: tuple[Core, AzureCoordinates],
    fake: FakeAzure,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core, coords = core_on_azure
    with_metrics = submit_through_the_bot(core)
    fake.end_job(
        coords, with_metrics, "Completed", ran_for=timedelta(seconds=140), metrics={"f1": 0.87}
    )
    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)
    without = submit_through_the_bot(core)
    fake.end_job(coords, without, "Completed", ran_for=timedelta(seconds=60), metrics={"f1": 0.5})
    fake.fail("GET", "/mlflow/", 503, times=100)
    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)

    [completed] = announcements(core, with_metrics)
    assert "(ran 2m20s, 2m40s after submission).\nMetrics: f1=0.87\nStudio: " in completed
    [no_metrics] = announcements(core, without)
    assert "(ran 1m, " in no_metrics and "Metrics" not in no_metrics
    assert f"could not read the metrics of job {without}" in caplog.text


def test_a_running_job_costs_no_run_history_call(
    core_on_azure: tuple[Core, AzureCoordinates], fake: FakeAzure, clock: ManualClock
) -> None:
    core, coords = core_on_azure
    name = submit_through_the_bot(core)
    fake.set_job_status(coords, name, "Running")

    for _ in range(3):
        follow_jobs(core, clock.now(), idle_spend=idle_spend_between)
    fake.end_job(coords, name, "Completed", ran_for=timedelta(minutes=1))
    for _ in range(3):
        follow_jobs(core, clock.now(), idle_spend=idle_spend_between)

    assert len(fake.calls_to("GET", "/history/")) == 1
    assert [text.split("\n")[0].split(" (")[0] for text in announcements(core, name)] == [
        f"Job `{name}` is running on `cpu-cluster`.",
        f"Job `{name}` completed on `cpu-cluster`",
    ]


def test_no_sas_reaches_a_log_record_a_stored_row_or_a_message(
    core_on_azure: tuple[Core, AzureCoordinates],
    fake: FakeAzure,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs every request line, query included, here
    core, coords = core_on_azure
    # The first job's log fails to come (every try), for the error paths; the second's comes.
    name = submit_through_the_bot(core)
    fake.end_job(coords, name, "Failed", ran_for=timedelta(minutes=1), error=USER_ERROR, log="x\n")
    other = submit_through_the_bot(core)
    fake.end_job(
        coords, other, "Failed", ran_for=timedelta(minutes=1), error=USER_ERROR, log=TRACEBACK
    )
    fake.fail("GET", "/blobs/", 503, times=3)

    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)

    assert "Last lines of user_logs/std_log.txt" in announcements(core, other)[0]
    formatter = logging.Formatter("%(name)s %(message)s")
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "/blobs/" in logged  # the transport's own request lines were captured
    assert_no_sas(fake, logged)
    assert_no_sas(fake, everything_stored(core))
    assert_no_sas(fake, "\n".join(announcements(core, name) + announcements(core, other)))


def test_a_run_history_outage_still_announces_the_end_without_details(
    core_on_azure: tuple[Core, AzureCoordinates],
    fake: FakeAzure,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core, coords = core_on_azure
    name = submit_through_the_bot(core)
    fake.end_job(coords, name, "Failed", ran_for=timedelta(minutes=1), error=USER_ERROR, log="x\n")
    fake.fail("GET", "/history/", 503, times=100)

    announced = follow_jobs(core, clock.now(), idle_spend=idle_spend_between)
    again = follow_jobs(core, clock.now(), idle_spend=idle_spend_between)

    assert (announced, again) == (1, 0)
    [failed] = announcements(core, name)
    assert failed.startswith(f"Job `{name}` failed on `cpu-cluster`.\nStudio: ")
    assert f"details of job {name} unavailable; announced without them" in caplog.text
    # A few quick tries, not the minutes the other calls may retry for.
    assert len(fake.calls_to("GET", "/history/")) == 3
