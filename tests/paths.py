"""Files of the repository, found from here so tests pass from any working directory."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO_ROOT / "deploy" / "kubernetes" / "base" / "config.example.yml"
RULES_CONFIG = REPO_ROOT / "deploy" / "config.rules.example.yml"
# An Azure region neither the test prices (`tests/conftest.py`) nor the shipped snapshot
# cover: every price there is unknown.
UNPRICED_REGION = "norwayeast"


def rules_config_in(region: str) -> str:
    """The rules example's text with its workspace in another Azure region (one no price
    is known for, say)."""
    text = RULES_CONFIG.read_text(encoding="utf-8")
    assert "    region: eastus\n" in text
    return text.replace("    region: eastus\n", f"    region: {region}\n")
