"""The image: dependencies from the lock in their own layer before the code, non-root, a
health check for both `serve` and `work`; `amlbot --version`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", ROOT / "deploy" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dockerfile() -> list[str]:
    return [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line]


def test_amlbot_version_prints_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout == f"amlbot {PROJECT['version']}\n"


def test_the_lock_pins_every_dependency_within_the_projects_ranges() -> None:
    pins = lock()
    for text in PROJECT["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {text}"


def test_the_lock_covers_what_the_installed_dependencies_need_and_no_test_tools() -> None:
    pins = lock()
    needed = set(lock_module().runtime_closure())
    assert needed <= set(pins), f"missing from requirements.lock: {sorted(needed - set(pins))}"
    for tool in ("pytest", "ruff", "mypy", "hypothesis", "kubernetes-validate", "import-linter"):
        assert tool not in pins


def test_the_dependencies_are_installed_from_the_lock_before_the_code_is_copied() -> None:
    lines = dockerfile()
    install_lock = lines.index("RUN pip install --no-cache-dir -r requirements.lock")
    assert lines.index("COPY requirements.lock ./") < install_lock
    first_code = min(i for i, line in enumerate(lines) if line.startswith("COPY bot"))
    assert install_lock < first_code
    assert (
        "RUN pip install --no-cache-dir --no-deps . && python -m compileall -q /opt/amlbot" in lines
    )


def test_the_final_image_runs_as_a_non_root_user() -> None:
    lines = dockerfile()
    final = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    users = [line.split()[1] for line in lines[final:] if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def test_the_health_check_is_a_python_program_probing_serve_and_work_ports() -> None:
    line = next(line for line in dockerfile() if line.startswith("HEALTHCHECK "))
    command = json.loads(line[line.index("CMD ") + 4 :])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")
    assert "up(3000) or up(8080)" in command[2]
