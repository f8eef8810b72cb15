"""The layering holds. The import contracts themselves are `lint-imports` in .ci/run
(pyproject.toml, [tool.importlinter]); here, what it cannot check: that the contracts
list no exceptions, and that starting the core imports no Azure SDK."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_list_no_exceptions() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["contracts"], "the contracts are gone"
    for contract in config["contracts"]:
        assert "ignore_imports" not in contract, contract["name"]


def test_starting_the_core_does_not_import_the_azure_sdk() -> None:
    code = (
        "import sys, bot.cli, bot.wiring, approvals.service, workspaces.local; "
        "print('azure.ai.ml' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"
