"""The layering holds: the core knows neither Slack nor Azure, and imports stay lazy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = ("slack_bolt", "slack_sdk", "azure")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["commands", "approvals"])
def test_core_packages_import_neither_slack_nor_azure(package: str) -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN_IN_CORE or name.startswith("bot")
    }
    assert offenders == set()


def test_commands_does_not_reach_up_into_approvals() -> None:
    offenders = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "commands").rglob("*.py")
        if any(name.split(".")[0] in {"approvals", "bot"} for name in imported_modules(path))
    }
    assert offenders == set()


def test_starting_the_core_does_not_import_the_azure_sdk() -> None:
    code = (
        "import sys, bot.cli, bot.wiring, approvals.service, workspaces.local; "
        "print('azure.ai.ml' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"
