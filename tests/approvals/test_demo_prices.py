"""The built-in demo is priced offline: it is in `eastus`, which the shipped snapshot covers,
so a new user sees what its computes cost before the bot has ever reached Azure's Retail
Prices API. A price the snapshot lacks (low priority) reads "price unknown", never a guess
and never "~unknown"."""

from __future__ import annotations

from approvals.idle.detection import IdleFinding
from approvals.idle.digest import finding_line
from bot.wiring import Core
from workspaces.prices import BOOK


def test_the_demo_compute_list_is_priced_from_the_snapshot_and_names_what_is_unknown(
    core: Core,
) -> None:
    BOOK.clear()  # nothing fetched yet: a fresh machine offline

    text = core.service.handle_text("alice", "compute list").text

    assert "`cpu-cluster`: STANDARD_DS3_V2, dedicated" in text
    assert "~$0.29/node-hour, open to all members" in text
    assert "(min 0, max 2), price unknown, needs an access grant" in text  # low priority
    assert "~unknown" not in text
    assert "Prices: snapshot of 2024-01-01, eastus (estimates)." in text


def test_an_idle_compute_of_unknown_price_says_so_in_the_digest() -> None:
    finding = IdleFinding(
        compute="gpu-cluster",
        kind="cluster",
        vm_size="Standard_NC6s_v3",
        reasons=("minimum nodes is 1, so they never scale down (recommended: 0)",),
        idle_since=None,
        idle_nodes=1,
        min_nodes=1,
        hourly_cost=None,
        cost_so_far=None,
        fingerprint="f",
    )

    assert finding_line(finding).endswith("(recommended: 0). Price unknown")
