"""Tests that read repository files pass from any working directory, not only the root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.paths import REPO_ROOT

READERS_OF_THE_EXAMPLE = [
    "tests/approvals/test_config.py::test_example_file_under_deploy_is_the_demo",
    "tests/approvals/test_workflow.py::test_two_approvers_policy_needs_two_distinct_leads",
    "tests/approvals/test_concurrency.py::test_two_threads_deciding_at_once_execute_once",
]


def test_tests_reading_the_example_config_pass_from_another_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not postgres",
            *(str(REPO_ROOT / test) for test in READERS_OF_THE_EXAMPLE),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
