"""Files of the repository, found from here so tests pass from any working directory."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO_ROOT / "deploy" / "kubernetes" / "base" / "config.example.yml"
RULES_CONFIG = REPO_ROOT / "deploy" / "config.rules.example.yml"
