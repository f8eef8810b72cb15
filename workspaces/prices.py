"""Estimated hourly prices of common Azure ML VM sizes, for cost hints on cards and alerts.

Source: Azure Virtual Machines pay-as-you-go list prices for Linux in East US, as published
on the Azure pricing pages in 2024 (USD per node-hour, rounded). Real bills differ by region,
agreement and currency: these are estimates to compare options, never invoices.
"""

from __future__ import annotations

PRICE_SOURCE = "Azure pay-as-you-go Linux list prices, East US, 2024 (USD, estimates)"

# Low-priority (spot-like) nodes cost about a fifth of dedicated ones.
LOW_PRIORITY_FACTOR = 0.2

_HOURLY_USD: dict[str, float] = {
    "STANDARD_D2S_V3": 0.096,
    "STANDARD_D4S_V3": 0.192,
    "STANDARD_D8S_V3": 0.384,
    "STANDARD_D2_V2": 0.146,
    "STANDARD_D3_V2": 0.293,
    "STANDARD_DS2_V2": 0.146,
    "STANDARD_DS3_V2": 0.293,
    "STANDARD_DS4_V2": 0.585,
    "STANDARD_DS11_V2": 0.185,
    "STANDARD_DS12_V2": 0.371,
    "STANDARD_E4DS_V4": 0.288,
    "STANDARD_F4S_V2": 0.169,
    "STANDARD_NC6": 0.90,
    "STANDARD_NC6S_V3": 3.06,
    "STANDARD_NC12S_V3": 6.12,
    "STANDARD_NC24S_V3": 12.24,
    "STANDARD_NC4AS_T4_V3": 0.526,
    "STANDARD_NC8AS_T4_V3": 0.752,
    "STANDARD_NC24ADS_A100_V4": 3.673,
    "STANDARD_ND96ASR_V4": 27.197,
}


def hourly_price(vm_size: str, *, low_priority: bool = False) -> float | None:
    """Estimated USD per node-hour, or None for a size the table does not know."""
    price = _HOURLY_USD.get(vm_size.upper())
    if price is None:
        return None
    return round(price * (LOW_PRIORITY_FACTOR if low_priority else 1.0), 4)


def format_price(amount: float | None) -> str:
    return "unknown" if amount is None else f"${amount:,.2f}"
