"""`JobOutcome`: whichever backend builds it, it quotes a short tail of a log and no secret."""

from __future__ import annotations

from workspaces.types import ERROR_LOG_TAIL_CHARS, JobOutcome

SAS_URL = (
    "https://st.blob.core.windows.net/azureml/ExperimentRun/dcid.j/user_logs/std_log.txt"
    "?sv=2019-07-07&sr=b&sig=9jnCW708rRVooQUbe5dJFWnbeYHmyrR5YrAQKrc%2Bhp4%3D&se=2026-01-06&sp=r"
)


def test_the_tail_keeps_the_last_twenty_lines() -> None:
    outcome = JobOutcome(error_log_tail=[f"line {n}" for n in range(100)])

    assert outcome.error_log_tail == [f"line {n}" for n in range(80, 100)]


def test_the_tail_keeps_as_many_last_lines_as_fit_1500_characters() -> None:
    outcome = JobOutcome(error_log_tail=["x" * 299] * 10)

    assert outcome.error_log_tail == ["x" * 299] * 5
    assert len("\n".join(outcome.error_log_tail)) < ERROR_LOG_TAIL_CHARS


def test_one_huge_last_line_keeps_its_end_where_the_error_is() -> None:
    outcome = JobOutcome(error_log_tail=["ok", "a" * 5000 + "ValueError: bad"])

    [kept] = outcome.error_log_tail
    assert kept.startswith("…") and kept.endswith("ValueError: bad")
    assert len(kept) < ERROR_LOG_TAIL_CHARS


def test_lines_holding_secrets_are_withheld_in_the_tail_and_the_error() -> None:
    outcome = JobOutcome(
        error=f"Could not read {SAS_URL}\nExecution failed.",
        error_log_tail=[f"downloading {SAS_URL}", "token xoxb-123456789012-abcdefghijkl", "done"],
    )

    assert outcome.error == "[line withheld: it looks like a SAS token]\nExecution failed."
    assert outcome.error_log_tail == [
        "[line withheld: it looks like a SAS token]",
        "[line withheld: it looks like a Slack token]",
        "done",
    ]
